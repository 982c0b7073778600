"""The TensorBoard callbacks on their own: what they write, for any model structure."""
import keras
import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from training import callbacks as cb


def _reload(folder):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    return acc


def test_op_graph_for_a_model_with_named_dict_inputs(tmp_path):
    inputs = {"weight": keras.Input((1,), name="weight"), "year": keras.Input((1,), name="year")}
    output = keras.layers.Dense(1)(keras.layers.Concatenate()([inputs["weight"], inputs["year"]]))
    model = keras.Model(inputs, output)
    model.compile(optimizer="sgd", loss="mse")
    x = {"weight": np.ones((8, 1), np.float32), "year": np.ones((8, 1), np.float32)}
    model.fit(x, np.ones((8, 1)), epochs=1, verbose=0, callbacks=[cb.OpGraph(str(tmp_path))])
    cb.flush_writers()
    assert _reload(tmp_path).Tags()["graph"]


def test_confusion_matrix_counts_and_image(tmp_path):
    matrix = cb.confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    data = tf.data.Dataset.from_tensor_slices((np.random.rand(30, 2).astype("float32"), np.arange(30) % 3)).batch(8)
    model.fit(data, epochs=1, verbose=0, shuffle=False,
              callbacks=[cb.ConfusionMatrix(str(tmp_path), data, ["a", "b", "c"])])
    cb.flush_writers()
    tags = set(_reload(tmp_path).Tags()["tensors"])
    assert {"confusion_matrix/image", "confusion_matrix/counts"} <= tags


def test_every_n_steps_fires_even_when_keras_skips_steps():
    # steps_per_execution=4: hooks see steps 4, 8, 12, 16, 20; every=5 must fire at 8, 12, 16, 20.
    fired, last = [], 0
    for step in (4, 8, 12, 16, 20):
        if cb.crossed(last, step, 5):
            fired.append(step)
        last = step
    assert fired == [8, 12, 16, 20]
    assert [s for s in range(1, 11) if cb.crossed(s - 1, s, 5)] == [5, 10]  # one step at a time: exact multiples

"""The TensorBoard callbacks on their own: what they write, for any model structure."""
import keras
import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from observation import callbacks as cb


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


def test_pictures_write_figures_as_images_and_markdown_as_text(tmp_path):
    """Pictures: what an app draws each epoch and at the end lands as images and text; the
    confusion matrix counts true rows against predicted columns."""
    from observation import figures

    matrix = cb.confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    data = tf.data.Dataset.from_tensor_slices((np.random.rand(30, 2).astype("float32"), np.arange(30) % 3)).batch(8)
    seen = []

    def epoch_end(model, when):
        seen.append(when)
        return {"table": "| a | b |\n|---|---|\n| 1 | 2 |"}

    def train_end(model, when):
        seen.append(when)
        return {"confusion_matrix": figures.confusion_matrix(matrix, ["a", "b", "c"], f"test, {when}")}

    model.fit(data, epochs=2, verbose=0, callbacks=[cb.Pictures(str(tmp_path), epoch_end, train_end)])
    cb.flush_writers()
    events = _reload(tmp_path)
    assert seen == ["after epoch 1", "after epoch 2", "end of training, step 8"]
    assert [e.step for e in events.Tensors("table")] == [1, 2]
    (image,) = events.Tensors("confusion_matrix")
    width, height, png = tf.make_ndarray(image.tensor_proto)
    assert image.step == 8 and png.startswith(b"\x89PNG") and int(width) > 300 and int(height) > 300


def test_every_n_steps_fires_even_when_keras_skips_steps():
    # steps_per_execution=4: hooks see steps 4, 8, 12, 16, 20; every=5 must fire at 8, 12, 16, 20.
    fired, last = [], 0
    for step in (4, 8, 12, 16, 20):
        if cb.crossed(last, step, 5):
            fired.append(step)
        last = step
    assert fired == [8, 12, 16, 20]
    assert [s for s in range(1, 11) if cb.crossed(s - 1, s, 5)] == [5, 10]  # one step at a time: exact multiples


def test_hparams_columns_that_differ_between_an_apps_runs_come_first(tmp_path):
    """TensorBoard ticks the first five HParams columns, differing ones first: the ones runs differ in."""
    from observation.hparams import differing

    for run, rate in (("a-1", 0.003), ("a-2", 0.001), ("b-1", 0.003)):
        (tmp_path / run).mkdir()
        config = {"model": "cnn_bn", "epochs": 3, "learning_rate": rate, "options": {}, "hparams": {"dropout": 0.25}}
        (tmp_path / run / "run_config.json").write_text(__import__("json").dumps(config))
    assert differing(tmp_path, ["model", "epochs", "learning_rate", "dropout", "precision"]) == {"learning_rate"}


def test_pictures_flag_keeps_the_end_or_nothing():
    from training.run import pictures

    def draw(model, when):
        return {}

    other = cb.StepLog("/dev/null")
    for when, kept in (("every_epoch", (draw, draw)), ("end", (None, draw))):
        chosen = pictures([cb.Pictures("x", draw, draw), other], when)
        assert chosen[1] is other and (chosen[0].epoch_end, chosen[0].train_end) == kept
    assert pictures([cb.Pictures("x", draw, draw), other], "none") == [other]


def test_weight_histograms_count_as_tensorboard_does():
    """observation/callbacks.py: histogram_buckets, TensorBoard's layout counted in bounded memory."""
    from tensorboard.plugins.histogram import summary_v2

    weights = np.random.default_rng(0).normal(size=(300, 70)).astype(np.float32)
    ours = cb.histogram_buckets(weights)
    theirs = summary_v2._buckets(tf.constant(weights), tf.constant(30)).numpy()
    assert ours.shape == (30, 3) and ours[:, 2].sum() == weights.size
    np.testing.assert_allclose(ours[:, :2], theirs[:, :2], rtol=1e-6)
    assert np.abs(ours[:, 2] - theirs[:, 2]).max() <= 1  # a value on an edge may fall either side of it
    constant = np.full((4, 4), 0.5, np.float32)
    np.testing.assert_array_equal(cb.histogram_buckets(constant),
                                  summary_v2._buckets(tf.constant(constant), tf.constant(30)).numpy())
    with_nan = np.array([1.0, np.nan, 3.0], np.float32)
    assert cb.histogram_buckets(with_nan)[:, 2].sum() == 2  # what cannot be drawn is left out


def test_weight_histograms_land_in_tensorboard_every_n_epochs(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")], name="net")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 2)), epochs=3, verbose=0,
              callbacks=[cb.WeightHistograms(str(tmp_path), every=2)])
    cb.flush_writers()
    acc = _reload(tmp_path)
    histograms = acc.PluginTagToContent("histograms")
    assert set(histograms) == {"net/dense/kernel/histogram", "net/dense/bias/histogram"}  # Keras' tags
    events = acc.Tensors("net/dense/kernel/histogram")
    assert [e.step for e in events] == [0, 2]
    assert tf.make_ndarray(events[0].tensor_proto).shape == (30, 3)

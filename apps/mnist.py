"""MNIST digits: train a classifier on real MNIST and export it for TF Serving.

    python -m apps.mnist                  # default model: >= 99.5 % test accuracy, < 10 min on 2 CPU cores
    python -m apps.mnist --model cnn      # the seed article's CNN (S2), exactly
    python -m apps.mnist --smoke          # the whole path on a slice of the data, in seconds

The models are the image models every 28x28 app shares (apps/images.py); the
model takes raw uint8 pixels and scales them itself.
"""
from __future__ import annotations

from apps import images
from pipelines import mnist as mnist_data
from pipelines.input import random_shift

NAME = "mnist"
OBJECTIVE = "val_accuracy"  # what python -m tuning mnist maximises
CLASS_NAMES = tuple(str(d) for d in range(10))
DEFAULT_MODEL, DP_MODEL, MODELS = images.DEFAULT_MODEL, images.DP_MODEL, images.MODELS
EXPLAIN_INPUT = ("a picture of a digit (PNG, JPEG, GIF, BMP, WebP or NPY; any size and colours: made 28x28 grey): "
                 "classify it, explain it with Grad-CAM and integrated gradients")
serving_inputs = images.serving_inputs


def load_data(config):
    """Unbatched (uint8 [28, 28, 1], int64) train / validation / test splits."""
    return mnist_data.load(config.data_source, config.data_dir, smoke=config.smoke)


def augment(images_, labels, seed):
    """Random shifts of up to 2 pixels: digits are centred by mass in MNIST, and
    small offsets are the one variation the test set really has."""
    return random_shift(images_, 2, seed), labels


def serving(config, splits):
    return images.serving(NAME)


def tensorboard_callbacks(logdir, splits, test, config):
    return images.tensorboard_callbacks(logdir, splits, test, CLASS_NAMES)


def explain(model, given: str, version):
    """--explain FILE: a picture of any size and colours, made 28x28 grey (apps/image_pictures.py)."""
    return images.explain(model, given, CLASS_NAMES)


def details(model, splits, config):
    """Nothing beyond the test metrics to report for MNIST."""
    return {}


if __name__ == "__main__":
    import sys

    from cli.main import main

    raise SystemExit(main(sys.modules[__name__]))

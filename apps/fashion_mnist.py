"""Fashion-MNIST: the harder drop-in for MNIST (10 kinds of clothing); exported for TF Serving.

    python -m apps.fashion_mnist                    # default model: 91.05 % test accuracy, about 6 min on 2 CPU cores
    python -m apps.fashion_mnist --model convnet    # keras.io's simple convnet, for comparison
    python -m apps.fashion_mnist --init-from runs/mnist/<run>/model.keras --train-examples 600
                                                    # start from an MNIST model, learn from 600 labels

Data: TFDS fashion_mnist online, else Debian's dataset-fashion-mnist package
(`sudo apt-get install dataset-fashion-mnist`), checked against the authors'
digests (pipelines/fashion_mnist.py). The models are those of apps.mnist
(apps/images.py), so one app's model can start the other's training.
"""
from __future__ import annotations

import tensorflow as tf

from apps import images
from pipelines import fashion_mnist as fashion_data
from pipelines.input import random_shift

NAME = "fashion_mnist"
OBJECTIVE = "val_accuracy"
CLASS_NAMES = fashion_data.CLASS_NAMES
DEFAULT_MODEL, DP_MODEL, MODELS = images.DEFAULT_MODEL, images.DP_MODEL, images.MODELS
EXPLAIN_INPUT = ("a picture of clothing (PNG, JPEG, GIF, BMP, WebP or NPY; any size and colours: made 28x28 grey): "
                 "classify it, explain it with Grad-CAM and integrated gradients")
serving_inputs = images.serving_inputs


def load_data(config):
    """Unbatched (uint8 [28, 28, 1], int64) train / validation / test splits."""
    return fashion_data.load(config.data_source, config.data_dir, smoke=config.smoke)


def augment(images_, labels, seed):
    """Shifts of up to 2 pixels and left-right mirroring: a mirrored shirt or shoe
    is still a shirt or a shoe (an upside-down one is not, so no vertical flips)."""
    shift_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    return tf.image.stateless_random_flip_left_right(random_shift(images_, 2, shift_seed), flip_seed), labels


def serving(config, splits):
    return images.serving(NAME)


def tensorboard_callbacks(logdir, splits, test, config):
    return images.tensorboard_callbacks(logdir, splits, test, CLASS_NAMES)


def explain(model, given: str, version):
    """--explain FILE: a picture of any size and colours, made 28x28 grey (apps/image_pictures.py)."""
    return images.explain(model, given, CLASS_NAMES)


def details(model, splits, config):
    """Nothing beyond the test metrics to report."""
    return {}


if __name__ == "__main__":
    import sys

    from cli.main import main

    raise SystemExit(main(sys.modules[__name__]))

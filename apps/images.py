"""What the two 28x28 grey-scale image apps share: their models, serving signature and pictures.

apps.mnist (digits) and apps.fashion_mnist (clothes) are one task each and one
served model each; their images have the same shape and their models the
same layers, which is also what lets one start from the other (--init-from).
Each model takes raw uint8 pixels and scales them itself, so training, the
exported SavedModel and TF Serving all see the same preprocessing.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from apps import image_pictures
from core.config import ModelSpec
from deployment.export import Serving
from deployment.litert import LiteRT


def _inputs():
    """The raw uint8 image and its pixels in 0..1, in float32 whatever the policy (training/precision.py)."""
    image = keras.Input((28, 28, 1), dtype="uint8", name="image")
    return image, layers.Rescaling(1 / 255.0, dtype="float32")(image)


def _classifier(x):
    return layers.Dense(10, activation="softmax", dtype="float32", name="probabilities")(x)


def _compiled(model, optimizer):
    return model, dict(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def build_mlp(config, splits, steps_per_epoch):
    """S1: Flatten -> Dense 128 relu -> Dense 10 softmax; Adam; sparse cross-entropy."""
    image, x = _inputs()
    x = layers.Dense(128, activation="relu")(layers.Flatten()(x))
    return _compiled(keras.Model(image, _classifier(x), name="mlp"), keras.optimizers.Adam(config.learning_rate))


def build_cnn(config, splits, steps_per_epoch):
    """S2: Conv32 -> Pool -> Conv64 -> Pool -> Dense 128 -> Dropout 0.5 -> Dense 10.

    The article's categorical cross-entropy on one-hot labels is the same loss
    as sparse cross-entropy on integer labels; the integer form is kept so
    every image model shares one pipeline.
    """
    image, x = _inputs()
    x = layers.Conv2D(32, 3, activation="relu")(x)  # (B, 26, 26, 32)
    x = layers.MaxPooling2D(2)(x)  # (B, 13, 13, 32)
    x = layers.Conv2D(64, 3, activation="relu")(x)  # (B, 11, 11, 64)
    x = layers.MaxPooling2D(2)(x)  # (B, 5, 5, 64)
    x = layers.Dense(128, activation="relu")(layers.Flatten()(x))
    x = layers.Dropout(0.5)(x)
    return _compiled(keras.Model(image, _classifier(x), name="cnn"), keras.optimizers.Adam(config.learning_rate))


def build_convnet(config, splits, steps_per_epoch):
    """keras.io's "Simple MNIST convnet": Conv32 -> Pool -> Conv64 -> Pool -> Flatten -> Dropout 0.5 -> Dense 10;
    Adam, batch 128, 15 epochs. The usual reference point for a small CNN on either data set."""
    image, x = _inputs()
    x = layers.MaxPooling2D(2)(layers.Conv2D(32, 3, activation="relu")(x))
    x = layers.MaxPooling2D(2)(layers.Conv2D(64, 3, activation="relu")(x))
    x = layers.Dropout(0.5)(layers.Flatten()(x))
    return _compiled(keras.Model(image, _classifier(x), name="convnet"), keras.optimizers.Adam(config.learning_rate))


def batch_norm_momentum(total_steps: int) -> float:
    """0.9, except for runs under 30 steps.

    Batch norm's moving statistics are an exponential average that starts at
    mean 0, variance 1. With Keras' 0.99 they trail the weights by about 100
    steps: under a one-cycle schedule, whose weights move fast early on, the
    MNIST default evaluated after its first epoch (430 steps) at 20-65 % test
    accuracy while its batches scored 97 %; with 0.9 the same epoch evaluates
    at 97.3-98.8 %, and the end is no worse (99.5 % either way, 10 epochs).
    0.9 also forgets the start by the end of a short run: after the 156 steps
    of 100 labelled images, 0.99 still kept 21 % of it and the model predicted
    one class for every test image (10.0 %; 69.5 % with the rule before this
    one, 1 - 10/steps, whose start weighed e**-10; 0.9**156 is 1e-7, and the
    100-label runs re-measured with it land where they did: docs/results.md, transfer).
    Only the shortest runs (a --smoke run, a few epochs of a small folder) do better
    from the start: the weights change too fast for any average to settle. On 2,000
    Fashion-MNIST pictures as files (apps.image_classifier, one run each), test
    accuracy with 0.99 / 0.9 after 16 steps 46.4 / 10.2 %, 20 steps 37.3 / 9.7 %,
    24 steps 27.9 / 14.1 %; after 32 steps 11.1 / 32.3 %, 64 steps 10.7 / 75.0 %,
    96 steps 11.1 / 78.0 % (0.99 predicted one class). MNIST's 16 smoke steps:
    38.7 / 13.5 %.
    """
    return 0.99 if total_steps < 30 else 0.9


def conv_bn(x, filters, momentum, norm, block: int | None = None):
    """Conv 3x3 -> batch norm -> ReLU, pooled 2x2 before the batch norm or after the ReLU.

    block: name the weighted layers as Keras names block `block`'s in a fresh process (conv2d, conv2d_1,
    ...), so --init-from matches them however many models the process built before (None: Keras' names).

    after_pool (the default) normalises and rectifies a quarter of the values:
    ReLU commutes with max pooling, and batch norm is the dearest part of a
    step on a CPU (Keras 3 computes it unfused). On MNIST it took a third off
    the default's epoch at the same accuracy (docs/results.md, MNIST).
    """
    suffix = "" if not block else f"_{block}"
    names = ({"name": f"conv2d{suffix}"}, {"name": f"batch_normalization{suffix}"}) if block is not None else ({}, {})
    x = layers.Conv2D(filters, 3, use_bias=False, **names[0])(x)  # BN supplies the bias
    if norm == "after_pool":
        x = layers.MaxPooling2D(2)(x)
    x = layers.ReLU()(layers.BatchNormalization(momentum=momentum, **names[1])(x))
    return x if norm == "after_pool" else layers.MaxPooling2D(2)(x)


def cnn_bn_space(hp):
    """What `python -m tuning mnist` searches; every default is the untuned default model."""
    hp.Int("conv_blocks", 2, 3, default=2)
    hp.Choice("norm", ["after_pool", "before_pool"], default="after_pool")  # where each block's batch norm sits
    hp.Choice("filters", [16, 32, 48, 64], default=32)  # the first block's; each further block doubles it
    hp.Choice("dense_units", [64, 128, 256], default=128)
    hp.Float("dropout", 0.0, 0.5, step=0.05, default=0.25)
    hp.Float("weight_decay", 1e-5, 1e-2, sampling="log", default=5e-4)
    hp.Choice("optimizer", ["adamw", "sgd"], default="adamw")
    hp.Choice("schedule", ["one_cycle", "cosine", "constant"], default="one_cycle")
    hp.Float("learning_rate", 3e-4, 3e-2, sampling="log", default=3e-3)
    hp.Choice("batch_size", [64, 128, 256], default=128)


def build_cnn_bn(config, splits, steps_per_epoch):
    """The default: S2's shape with batch norm, shift augmentation, AdamW and a
    one-cycle schedule (warm up for 20 % of the steps, then cosine decay).

    Batch norm and the schedule are what take S2 from ~99.2 % to >= 99.5 % on
    MNIST. Each block pools before its batch norm (conv_bn). Measured and not
    taken (10 epochs, docs/results.md): 48/96 filters with a 256-unit layer, label
    smoothing, a peak rate of 1e-2, batch 256, weight decay 0.05-0.1: all
    ended at 99.50-99.54 %, as this does, and the wider net cost 1.7x a step.
    Shape and training follow config.hparams (cnn_bn_space).
    """
    h = config.hparams
    total_steps = config.epochs * (steps_per_epoch or 1)
    momentum = batch_norm_momentum(total_steps)
    image, x = _inputs()
    for block in range(h["conv_blocks"]):  # 28 -> 26 -> 13 -> 11 -> 5 (-> 3 -> 1)
        x = conv_bn(x, h["filters"] * 2 ** block, momentum, h["norm"])
    x = layers.Flatten()(x)
    x = layers.Dropout(h["dropout"])(x)
    x = layers.Dense(h["dense_units"], use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization(momentum=momentum)(x))
    x = layers.Dropout(h["dropout"])(x)
    model = keras.Model(image, _classifier(x), name="cnn_bn")
    schedule = learning_rate_schedule(h["schedule"], config.learning_rate, total_steps)
    if h["optimizer"] == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=h["weight_decay"])
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=h["weight_decay"])
    return _compiled(model, optimizer)


def build_dp_cnn(config, splits, steps_per_epoch):
    """For --dp: Papernot et al. 2020's MNIST CNN with tempered sigmoids (tanh), no batch norm.

    Conv16 8x8/2 -> Pool 2/1 -> Conv32 4x4/2 -> Pool 2/1 -> Dense 32 -> Dense 10,
    26,010 weights. Bounded activations keep gradients from growing when clipping
    removes their scale, which is what made them better than ReLU under DP-SGD
    in that paper; a small model keeps per-example gradients cheap.
    SGD with momentum and a cosine decay. At epsilon 3 the noise, not the
    optimisation, limits it: 15 epochs reached 97.7 % test accuracy where 40
    epochs (more steps, so more noise each) reached 97.4 % (docs/results.md, differential privacy).
    """
    image, x = _inputs()
    x = layers.Conv2D(16, 8, strides=2, padding="same", activation="tanh")(x)  # (B, 14, 14, 16)
    x = layers.MaxPooling2D(2, strides=1)(x)  # (B, 13, 13, 16)
    x = layers.Conv2D(32, 4, strides=2, activation="tanh")(x)  # (B, 5, 5, 32)
    x = layers.MaxPooling2D(2, strides=1)(x)  # (B, 4, 4, 32)
    x = layers.Dense(32, activation="tanh")(layers.Flatten()(x))
    schedule = learning_rate_schedule("cosine", config.learning_rate, config.epochs * (steps_per_epoch or 1))
    return _compiled(keras.Model(image, _classifier(x), name="dp_cnn"), keras.optimizers.SGD(schedule, momentum=0.9))


def learning_rate_schedule(kind, peak, total_steps):
    """one_cycle: warm up from peak/10 over the first 20 % of the steps, then
    cosine decay to 1 % of peak; cosine: the decay alone; constant: peak."""
    if kind == "constant":
        return peak
    warmup = max(total_steps // 5, 1) if kind == "one_cycle" else 0
    start = peak / 10 if warmup else peak
    return keras.optimizers.schedules.CosineDecay(start, max(total_steps - warmup, 1), alpha=0.01,
                                                  warmup_target=peak if warmup else None, warmup_steps=warmup)


DEFAULT_MODEL = "cnn_bn"
DP_MODEL = "dp_cnn"  # --dp without --model: cnn_bn's batch norm cannot be trained with DP-SGD
MODELS = {
    "cnn_bn": ModelSpec(build_cnn_bn, epochs=10, augment=True, space=cnn_bn_space,
                        help="default: CNN + batch norm + augmentation + one-cycle AdamW"),
    "cnn": ModelSpec(build_cnn, epochs=10, batch_size=64, learning_rate=1e-3, help="seed S2, the article's CNN"),
    "mlp": ModelSpec(build_mlp, epochs=5, batch_size=32, learning_rate=1e-3, help="seed S1, the article's MLP"),
    "convnet": ModelSpec(build_convnet, epochs=15, batch_size=128, learning_rate=1e-3,
                         help="keras.io's simple MNIST convnet, as that example trains it"),
    "dp_cnn": ModelSpec(build_dp_cnn, epochs=15, batch_size=512, learning_rate=0.3,
                        help="for --dp (its default there): Papernot et al.'s tanh CNN, SGD"),
}


def serving(name: str) -> Serving:
    """Raw uint8 images [B, 28, 28] -> class probabilities [B, 10] and predicted class [B]."""
    def serve(model, images):
        probabilities = model(tf.expand_dims(images, -1), training=False)
        return {"probabilities": probabilities, "class": tf.argmax(probabilities, axis=-1)}

    # LiteRT: the served function itself (uint8 images in, all builtin ops), every variant.
    return Serving(name, {"images": tf.TensorSpec([None, 28, 28], tf.uint8)}, ("probabilities", "class"), serve,
                   metric=("accuracy", "probabilities"), litert=LiteRT())


def serving_inputs(features):
    """A pipeline batch (uint8 [B, 28, 28, 1]) as serving inputs."""
    return {"images": np.asarray(features)[..., 0]}


def tensorboard_callbacks(logdir, splits, test, class_names):
    """Labelled test images and explanations every epoch, the confusion matrix at the end (apps/image_pictures.py)."""
    return image_pictures.pictures(logdir, splits, test, class_names)


def explain(model, given: str, class_names):
    """--explain FILE: a picture's prediction (any size and colours, made 28x28 grey), Grad-CAM and integrated
    gradients."""
    return image_pictures.explain_file(model, given, class_names)

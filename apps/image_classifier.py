"""Your own pictures: a folder of one folder per class, and everything the suite does.

    python -m apps.image_classifier --data photos/                 # photos/<class>/*.jpg (any format, size, mode)
    python -m apps.image_classifier --data photos/ --image-size 64 --channels 3
    python -m apps.image_classifier --explain cat.jpg --name photos   # one picture, with the newest export

photos/train, photos/validation and photos/test are used as given when they
exist (each with the same class folders); otherwise the files are split with
the seed, stratified by class, and the split kept in the run folder. The first
pass lists the files that cannot be used (apps/image_folder.py). The image size
and channels default to what the pictures are (said in one line). The model
takes uint8 pixels and scales them itself; the exported serving_default takes
encoded picture bytes (TF Serving's {"b64": ...}), decodes and resizes them in
the graph exactly as training did (pipelines/image_files.py: decode) and
answers probabilities, class (the folder's name) and class_id. The served
model is named after the folder (photos/: saved_models/photos/) unless --name.
"""
from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf
from keras import layers

from apps import image_classifier_parts as parts, image_folder, images
from core.config import ModelSpec
from core.errors import UsageError
from deployment.export import Serving, model_name
from pipelines.input import random_shift

NAME = "image_classifier"
OBJECTIVE = "val_accuracy"  # what python -m tuning image_classifier maximises
EXPLAIN_INPUT = ("a picture (JPEG, PNG, GIF, BMP or WebP, any size and colours): classify it as the served model "
                 "would, explain it with Grad-CAM and integrated gradients")
DATA_SERVICE = True  # --data-service: the batches are made from files, by TensorFlow ops alone (with --cache none)
DP_NOT_COVERED = ()  # the image size and channels are chosen from the pictures' headers, not their pixels


def add_arguments(group):
    add = group.add_argument
    add("--data", metavar="DIR", default="", help="the folder: one folder of pictures per class, or train/, "
                                                  "validation/ and test/ folders of them (required to train)")
    add("--name", metavar="NAME", default="", help="the served model's name (default: the folder's name): "
                                                   "exports go to EXPORT_DIR/NAME/<version>/")
    add("--image-size", type=int, default=0, metavar="PIXELS",
        help=f"the side the pictures are resized to (default: their median shorter side, at most "
             f"{image_folder.MAX_DEFAULT_SIZE})")
    add("--channels", type=int, choices=(1, 3), default=0, help="1 (grey) or 3 (RGB); default: 1 if every "
                                                                "picture is grey")
    add("--cache", choices=("auto", "memory", "disk", "none"), default="auto",
        help="where decoded pictures are kept between epochs: memory, a file in DATA_DIR (disk), or nowhere "
             "(decoded again every epoch); auto: memory when they take at most 1 GB, else none")
    add("--split-fractions", metavar="VALIDATION,TEST", default="0.15,0.15",
        help="the shares of each class held out for validation and test (default 0.15,0.15)")


def served_name(config) -> str:
    """The TF Serving model name: --name, or the folder's name."""
    o = config.options
    return model_name(o["name"] or (Path(o["data"].rstrip("/\\")).name if o["data"] else ""), NAME, "--data DIR")


def check_config(config):
    """Everything about the folder that can be refused is refused here, before the run makes its folder."""
    o = config.options
    if config.explain is not None:
        return
    if not o["data"]:
        raise UsageError("--data DIR: name the folder to train on (one folder of pictures per class)")
    image_folder.splitting.parse_fractions(o["split_fractions"])
    if config.data_service:  # the service's workers decode the files; a cache in this process is out of their reach
        if o["cache"] in ("memory", "disk"):
            raise UsageError(f"--cache {o['cache']} keeps the pictures in this process, where --data-service's "
                             "workers cannot read them; leave --cache out (or --cache none)")
        o["cache"] = "none"
    if o["image_size"] and o["image_size"] < image_folder.MIN_SIZE:
        raise UsageError(f"--image-size {o['image_size']} is too small for the model: at least "
                         f"{image_folder.MIN_SIZE}")
    prepared = image_folder.prepare_once(config)
    # A changed folder is a new run, never a resume of one trained on other pictures.
    o["data_fingerprint"] = prepared.fingerprint
    served_name(config)


def load_data(config):
    return image_folder.as_splits(image_folder.prepare_once(config), config)


def augment(pictures, labels, seed):
    """Left-right mirroring, shifts of up to a fourteenth of the side (2 pixels at 28) and contrast within
    +-10 %: a mirrored, slightly moved or duller photo shows the same thing (upside down it may not)."""
    flip_seed, shift_seed, contrast_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    size = pictures.shape[1]
    out = random_shift(tf.image.stateless_random_flip_left_right(pictures, flip_seed), max(1, size // 14), shift_seed)
    factor = tf.random.stateless_uniform([tf.shape(out)[0], 1, 1, 1], contrast_seed, 0.9, 1.1)
    floats = tf.cast(out, tf.float32)
    mean = tf.reduce_mean(floats, axis=[1, 2, 3], keepdims=True)
    return tf.cast(tf.round(tf.clip_by_value((floats - mean) * factor + mean, 0, 255)), tf.uint8), labels


# ---- Models -----------------------------------------------------------------

def _shape(splits):
    prepared = splits.info["prepared"]
    return (prepared.size, prepared.size, prepared.channels), len(prepared.classes)


def blocks_for(size: int) -> int:
    """Convolution blocks until the maps are smaller than 8: 28 -> 13 -> 5 (2, the 28x28 apps' model),
    64 -> 31 -> 14 -> 6 (3), 128 -> 63 -> 30 -> 14 -> 6 (4)."""
    count = 0
    while size >= 8:
        size, count = (size - 2) // 2, count + 1
    return max(count, 1)


def build_cnn_bn(config, splits, steps_per_epoch):
    """The default: the 28x28 apps' cnn_bn (apps/images.py) grown with the pictures: a convolution block
    per halving until the maps are under 8 pixels, filters doubling from 32 (at most 256), flattened up to
    32 pixels a side and averaged over the map above; then dropout, a dense layer and batch norm; AdamW
    with a one-cycle schedule. On 28x28 grey pictures it is exactly the Fashion-MNIST app's default."""
    h = config.hparams
    shape, classes = _shape(splits)
    total_steps = config.epochs * (steps_per_epoch or 1)
    momentum = images.batch_norm_momentum(total_steps)
    image = keras.Input(shape, dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255.0, dtype="float32")(image)
    blocks = max(h["conv_blocks"], blocks_for(shape[0]))
    # Weighted layers named as Keras names the 28x28 apps' in a fresh process: --init-from matches by name.
    for block in range(blocks):
        x = images.conv_bn(x, min(h["filters"] * 2 ** block, 256), momentum, h["norm"], block=block)
    x = layers.Flatten()(x) if shape[0] <= 32 else layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(h["dropout"])(x)
    x = layers.Dense(max(h["dense_units"], 2 * classes), use_bias=False, name="dense")(x)
    x = layers.ReLU()(layers.BatchNormalization(momentum=momentum, name=f"batch_normalization_{blocks}")(x))
    x = layers.Dropout(h["dropout"])(x)
    outputs = layers.Dense(classes, activation="softmax", dtype="float32", name="probabilities")(x)
    schedule = images.learning_rate_schedule(h["schedule"], config.learning_rate, total_steps)
    if h["optimizer"] == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=h["weight_decay"])
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=h["weight_decay"])
    return keras.Model(image, outputs, name="cnn_bn"), dict(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                                                            metrics=["accuracy"])


def build_dp_cnn(config, splits, steps_per_epoch):
    """For --dp: the 28x28 apps' dp_cnn (Papernot et al.'s tanh CNN, no batch norm), its maps averaged
    above 32 pixels a side."""
    shape, classes = _shape(splits)
    image = keras.Input(shape, dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255.0, dtype="float32")(image)
    x = layers.Conv2D(16, 8, strides=2, padding="same", activation="tanh")(x)
    x = layers.MaxPooling2D(2, strides=1)(x)
    x = layers.Conv2D(32, 4, strides=2, activation="tanh")(x)
    x = layers.MaxPooling2D(2, strides=1)(x)
    x = layers.Flatten()(x) if shape[0] <= 32 else layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(32, activation="tanh")(x)
    outputs = layers.Dense(classes, activation="softmax", dtype="float32", name="probabilities")(x)
    schedule = images.learning_rate_schedule("cosine", config.learning_rate, config.epochs * (steps_per_epoch or 1))
    return keras.Model(image, outputs, name="dp_cnn"), dict(optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                                                            loss="sparse_categorical_crossentropy",
                                                            metrics=["accuracy"])


DEFAULT_MODEL = "cnn_bn"
DP_MODEL = "dp_cnn"
MODELS = {
    "cnn_bn": ModelSpec(build_cnn_bn, epochs=10, augment=True, space=images.cnn_bn_space,
                        help="default: convolution blocks with batch norm, as many as the image size asks; "
                             "augmentation; one-cycle AdamW"),
    "dp_cnn": ModelSpec(build_dp_cnn, epochs=15, batch_size=512, learning_rate=0.3,
                        help="for --dp (its default there): Papernot et al.'s tanh CNN, SGD"),
}


# ---- Serving ----------------------------------------------------------------

def serving(config, splits):
    """Encoded picture bytes [batch] -> probabilities, class (the folder's name), class_id."""
    prepared = splits.info["prepared"]
    files = {"classes.json": json.dumps({"classes": prepared.classes, "image_size": prepared.size,
                                         "channels": prepared.channels}, indent=2)}
    return Serving(served_name(config), {"image_bytes": tf.TensorSpec([None], tf.string)},
                   ("probabilities", "class", "class_id"), parts.serve_function(prepared), files=files,
                   metric=("accuracy", "probabilities"), litert=parts.litert(prepared),
                   inputs=parts.served_inputs(prepared))


def serving_inputs(features):
    """Unused: the splits hold file numbers, which Serving.inputs turns into the files' bytes."""
    raise NotImplementedError("apps.image_classifier's serving inputs come from Serving.inputs")


# ---- TensorBoard, --explain and report --------------------------------------

def tensorboard_callbacks(logdir, splits, test, config):
    return parts.pictures(logdir, splits, test)


def explain(model, given: str, version):
    return parts.explain_file(model, given, version)


def details(model, splits, config):
    """The served input and a sample request."""
    prepared = splits.info["prepared"]
    return {"serving input": "image_bytes: encoded picture bytes ({\"b64\": ...} in TF Serving's REST API); "
                             f"decoded and resized to {prepared.size} x {prepared.size} x {prepared.channels} "
                             "in the graph",
            "classes": ", ".join(prepared.classes[:20]) + (" ..." if len(prepared.classes) > 20 else "")}


def class_names(version) -> list:
    return json.loads((Path(version) / "classes.json").read_text())["classes"]



if __name__ == "__main__":
    import sys

    from cli.main import main

    raise SystemExit(main(sys.modules[__name__]))

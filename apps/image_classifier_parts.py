"""What the folder app serves, shows and explains: the bytes signature, LiteRT's pixels, pictures, --explain.

The signature takes encoded bytes; before decoding, each instance's first
bytes must say JPEG, PNG, GIF, BMP or WebP, else the request fails with an
error that names the instance (TF Serving answers it as a 400). The LiteRT
file starts after the decoding, at the uint8 pixels a phone's camera gives;
preprocessing.json says how bytes become them (deployment/phone_inputs.py,
"image").
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps import image_pictures
from core.errors import UsageError
from deployment.litert import LiteRT
from observation import explain, figures
from pipelines import image_files

SIGNATURES = {  # a format's first bytes (offset, bytes)
    "JPEG": ((0, b"\xff\xd8\xff"),),
    "PNG": ((0, b"\x89PNG\r\n\x1a\n"),),
    "GIF": ((0, b"GIF8"),),
    "BMP": ((0, b"BM"),),
    "WebP": ((0, b"RIFF"), (8, b"WEBP")),
}
PER_CLASS = 8  # pictures of each class in the sample grid at the start


def recognised(data):
    """bool [batch]: whether each instance's bytes start as a picture the decoder reads."""
    head = tf.strings.join([tf.strings.substr(data, 0, 12), tf.fill(tf.shape(data), "\0" * 12)])  # >= 12 bytes
    found = tf.zeros_like(data, tf.bool)
    for marks in SIGNATURES.values():
        match = tf.ones_like(data, tf.bool)
        for offset, mark in marks:
            match &= tf.equal(tf.strings.substr(head, offset, len(mark)), mark)
        found |= match
    return found


def decoded(data, size: int, channels: int):
    """Encoded bytes [batch] -> uint8 [batch, size, size, channels]; a request with an instance that is no
    picture fails, naming it."""
    ok = recognised(data)
    first_bad = tf.cast(tf.argmin(tf.cast(ok, tf.int32)), tf.int32)
    said = tf.strings.format("instance {} of the request (counting from 0) is not a JPEG, PNG, GIF, BMP or WebP "
                             "picture", first_bad)
    check = tf.debugging.Assert(tf.reduce_all(ok), [said])
    with tf.control_dependencies([check]):
        data = tf.identity(data)
    return tf.map_fn(lambda b: image_files.decode(b, size, channels), data,
                     fn_output_signature=tf.TensorSpec([size, size, channels], tf.uint8))


def serve_function(prepared):
    names = tf.constant(prepared.classes)

    def serve(model, image_bytes):
        probabilities = model(decoded(image_bytes, prepared.size, prepared.channels), training=False)
        class_id = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "class": tf.gather(names, class_id), "class_id": class_id}

    return serve


def litert(prepared) -> LiteRT:
    """The model on decoded pixels (uint8 [batch, size, size, channels]); preprocessing.json: the decoding."""
    shape = [None, prepared.size, prepared.size, prepared.channels]

    def core(model):
        def fn(image):
            return {"probabilities": model(image, training=False)}

        return fn, {"image": tf.TensorSpec(shape, tf.uint8)}

    recipe = {"inputs": {"image": {"type": "image", "from": "image_bytes", "size": prepared.size,
                                   "channels": prepared.channels}}}
    return LiteRT(core=core, preprocessing=recipe)


def served_inputs(prepared):
    """A batch of file numbers -> {"image_bytes": each file's bytes}: what a client would send."""
    def inputs(numbers) -> dict:
        return {"image_bytes": np.array([Path(prepared.paths[int(n)]).read_bytes() for n in np.asarray(numbers)],
                                        dtype=object)}

    return inputs


# ---- TensorBoard ----------------------------------------------------------------

def pictures(logdir, splits, test) -> list:
    """Start: PER_CLASS training pictures of each class and the class counts. Every epoch and at the end:
    the 28x28 apps' pictures (apps/image_pictures.py: predictions, confusion matrix, Grad-CAM and
    integrated gradients), on the decoded test pictures."""
    prepared, read = splits.info["prepared"], splits.info["read"]
    grey = "gray"  # a user's grey pictures as they are (the digit apps draw theirs black on white)

    def pixels(numbers):
        return np.asarray(read(tf.constant(np.asarray(numbers, np.int64))))

    def train_begin():
        numbers, labels = (np.asarray(a) for a in next(iter(splits.train.batch(50_000))))
        chosen = np.concatenate([numbers[labels == c][:PER_CLASS] for c in range(len(prepared.classes))])
        shown = np.concatenate([labels[labels == c][:PER_CLASS] for c in range(len(prepared.classes))])
        grid = figures.sample_grid(pixels(chosen), None, None, shown, prepared.classes,
                                   f"Training pictures as the model sees them ({prepared.size} x {prepared.size}, "
                                   "before augmentation), by class", columns=PER_CLASS, grey=grey)
        counts = {name: [int(np.sum((prepared.assignment == code) & (prepared.labels == c)))
                         for c in range(len(prepared.classes))] for code, name in ((0, "train"), (1, "validation"),
                                                                                  (2, "test"))}
        return {"data/samples": grid, "data/class_counts": figures.bars(
            prepared.classes, counts["train"], f"Pictures per class (train; validation {sum(counts['validation']):,}"
            f", test {sum(counts['test']):,})", "training pictures")}

    decoded_test = splits.test.batch(256).map(lambda n, y: (read(n), y)).unbatch()
    return image_pictures.pictures(logdir, splits._replace(test=decoded_test), test, prepared.classes, grey=grey,
                                   train_begin=train_begin)


# ---- --explain -------------------------------------------------------------------

def explain_file(model, given: str, version) -> explain.Explanation:
    """--explain PICTURE: decoded and resized as the served model does it, then its prediction, Grad-CAM
    and integrated gradients."""
    record = json.loads((Path(version) / "classes.json").read_text())
    path = Path(given)
    if not path.is_file():
        raise UsageError(f"--explain {given}: no such file")
    look = image_files.look(given)
    if look.problem:
        raise UsageError(f"--explain {given}: {look.problem}; give a JPEG, PNG, GIF, BMP or WebP picture")
    size, channels, names = record["image_size"], record["channels"], record["classes"]
    try:
        image = image_files.decode_file(tf.constant(given), size, channels).numpy()
    except tf.errors.OpError:
        raise UsageError(f"--explain {given}: {image_files.why_not(given)}") from None
    probabilities = model.predict(image[None], verbose=0)[0]
    top = np.argsort(probabilities)[::-1][:3]
    prediction = ", ".join(f"{names[c]} {probabilities[c]:.3f}" for c in top)
    maps = image_pictures.explain_images(model, image[None], top[:1])
    caption = f"predicted {names[top[0]]} ({probabilities[top[0]]:.2f})"
    figure = figures.image_explanations(image[None], maps, [caption], [False],
                                        f"What the model looks at for its prediction, {path.name}", grey="gray")
    note = (f"{look.format} {look.width} x {look.height} {look.mode}: decoded and resized to {size} x {size} "
            f"{'grey' if channels == 1 else 'RGB'} as the served model does")
    return explain.Explanation(f"{names[top[0]]}  (top 3: {prediction})", figure, [note])


"""Keras Tuner's state files written whole or not at all.

Keras Tuner 1.4.8 writes its oracle's state (oracle.json) and each trial's
(trial.json) in place: keras_tuner/src/utils.py's save_json opens the file for
writing, which empties it, then writes. A search killed between the two leaves
an empty oracle.json, and the resumed search stops at reading it
("JSONDecodeError: Expecting value"). save_json here writes beside the file and
renames over it, so a kill leaves the old state or the new one, and the resumed
search repeats at most the trial that was under way. install() puts it in
Keras Tuner's place; the tuning package does so when imported (tuning/__init__.py),
in a search's process and in its workers'.
"""
from __future__ import annotations

import json

import tensorflow as tf
from keras_tuner.src import utils


def save_json(path, obj) -> str:
    """Keras Tuner's save_json, atomic where the file system's rename is (a local disk)."""
    text = json.dumps(obj)
    partial = f"{path}.partial"
    with tf.io.gfile.GFile(partial, "w") as f:
        f.write(text)
    tf.io.gfile.rename(partial, str(path), overwrite=True)
    return text


def install() -> None:
    utils.save_json = save_json  # stateful.py and tuner.py call it through the module, so they get this one

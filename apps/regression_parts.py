"""The regression app's own model layers and TensorBoard pictures.

CarMaker and Diesel read the raw Auto MPG car name inside the model, so the
exported model takes the name as TF Serving clients send it. Saved models name
them by their registered names (tf_app_suite>CarMaker), so loading a saved
regression model needs this module imported (importing apps.regression does).
RegressionPlots: each epoch a table of sample predictions, at the end a
predicted-vs-true scatter image.
"""
from __future__ import annotations

import re

import keras
import numpy as np
import tensorflow as tf

from training.callbacks import summary_writer


# Misspellings and short forms in the UCI car names, mapped to one maker each.
MAKER_ALIASES = {
    "chevy": "chevrolet", "chevroelt": "chevrolet", "vw": "volkswagen", "vokswagen": "volkswagen",
    "toyouta": "toyota", "maxda": "mazda", "mercedes-benz": "mercedes", "hi": "international",
    "capri": "mercury",
}
_FIRST_WORD = r"^\s*(\S+).*$"


def car_maker(name: str) -> str:
    """The maker of a car name, exactly as CarMaker computes it in the graph."""
    first = re.sub(_FIRST_WORD, r"\1", name.lower(), flags=re.S)
    return MAKER_ALIASES.get(first, first)


@keras.saving.register_keras_serializable(package="tf_app_suite")
class CarMaker(keras.layers.Layer):
    """'chevy monte carlo' -> 'chevrolet': lower-cased first word, aliases merged.

    In the model (not in the pipeline) so the exported model takes the raw name.
    """

    def call(self, names):
        first = tf.strings.regex_replace(tf.strings.lower(names), _FIRST_WORD, r"\1")
        for alias, maker in MAKER_ALIASES.items():
            first = tf.where(tf.equal(first, alias), maker, first)
        return first

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tf_app_suite")
class Diesel(keras.layers.Layer):
    """1.0 where the car's name says diesel: diesels run 30-45 mpg at weights
    where petrol cars run 20-30, and the name is the only place that says so."""

    def call(self, names):
        return tf.cast(tf.strings.regex_full_match(tf.strings.lower(names), ".*diesel.*"), "float32")[:, None]

    def compute_output_shape(self, input_shape):
        return (*input_shape, 1)


def scatter_image(true: np.ndarray, predicted: np.ndarray, size: int = 240) -> np.ndarray:
    """Predicted (y axis) against true (x axis) as an RGB float image, with the y = x diagonal."""
    low = float(min(true.min(), predicted.min()))
    high = float(max(true.max(), predicted.max()))
    span = max(high - low, 1e-9)
    image = np.ones((size, size, 3), np.float32)
    diagonal = np.arange(size)
    image[size - 1 - diagonal, diagonal] = (0.6, 0.6, 0.6)
    cols = np.clip(((true - low) / span * (size - 1)).astype(int), 0, size - 1)
    rows = np.clip(size - 1 - ((predicted - low) / span * (size - 1)).astype(int), 0, size - 1)
    for dr in (-1, 0, 1):  # 3x3 dots
        for dc in (-1, 0, 1):
            image[np.clip(rows + dr, 0, size - 1), np.clip(cols + dc, 0, size - 1)] = (0.8, 0.1, 0.1)
    return image


class RegressionPlots(keras.callbacks.Callback):
    """Each epoch: a markdown table of fixed test examples, predicted vs true.
    At the end: the whole test set as a predicted-vs-true scatter image."""

    def __init__(self, logdir: str, features: dict, targets: np.ndarray, test: tf.data.Dataset):
        super().__init__()
        self.logdir, self.features, self.targets, self.test = logdir, features, targets, test

    def on_epoch_end(self, epoch, logs=None):
        batch = tf.data.Dataset.from_tensor_slices(self.features).batch(len(self.targets))  # strings need a Dataset
        predicted = np.asarray(self.model.predict(batch, verbose=0)).reshape(-1)
        names = list(self.features)
        rows = ["| " + " | ".join(names) + " | predicted | true | error |", "|---" * (len(names) + 3) + "|"]
        for i, (p, t) in enumerate(zip(predicted, self.targets)):
            values = " | ".join(_cell(self.features[n][i]) for n in names)
            rows.append(f"| {values} | {p:.2f} | {t:.2f} | {p - t:+.2f} |")
        with summary_writer(self.logdir).as_default():
            tf.summary.text("sample_predictions/table", "\n".join(rows), step=epoch + 1)

    def on_train_end(self, logs=None):
        true = np.concatenate([np.asarray(y) for _, y in self.test]).reshape(-1)
        predicted = np.asarray(self.model.predict(self.test, verbose=0)).reshape(-1)
        step = int(self.model.optimizer.iterations.numpy())
        with summary_writer(self.logdir).as_default():
            tf.summary.image("predicted_vs_true", scatter_image(true, predicted)[None], step=step)


def _cell(value) -> str:
    value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)



"""Model pieces and TensorBoard summaries for tabular and text apps.

CarMaker: a Keras layer that reads the maker from a raw Auto MPG car name.
RegressionPlots: each epoch a table of sample predictions, at the end a
predicted-vs-true scatter image and the test error by origin.
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


class TextPredictions(keras.callbacks.Callback):
    """Each epoch: fixed test texts with the predicted label, its probability and the true label."""

    def __init__(self, logdir: str, texts: list[str], labels: list[int], info: dict):
        super().__init__()
        self.logdir, self.texts, self.labels = logdir, texts, labels
        self.encode, self.class_names = info["encode"], list(info["class_names"])

    def on_epoch_end(self, epoch, logs=None):
        probabilities = self.model.predict(self.encode(tf.constant(self.texts)), verbose=0)
        rows = ["| text | predicted | p | true |", "|---|---|---|---|"]
        for text, p, label in zip(self.texts, probabilities, self.labels):
            mark = "" if p.argmax() == label else " **wrong**"
            cell = text.replace("|", "\\|")[:200]
            rows.append(f"| {cell} | {self.class_names[p.argmax()]} | {p.max():.3f} | {self.class_names[label]}{mark} |")
        with summary_writer(self.logdir).as_default():
            tf.summary.text("sample_predictions/table", "\n".join(rows), step=epoch + 1)


class Continuations(keras.callbacks.Callback):
    """Each epoch: greedy continuations of a few test prompts, as text."""

    def __init__(self, logdir: str, prompts: list[str], vectorizer, boundary: str, length: int = 80):
        super().__init__()
        self.logdir, self.prompts, self.boundary, self.length = logdir, prompts, boundary, length
        self.vocabulary = vectorizer.get_vocabulary()
        self.ids = {token: i for i, token in enumerate(self.vocabulary)}

    def continue_greedily(self, prompt: str) -> str:
        ids = [self.ids.get(c, 1) for c in self.boundary + prompt]
        out = ""
        for _ in range(self.length):
            # A direct call, not predict(): predict would split this one prompt across
            # replicas, and Keras' LSTM fails on the empty share of the second one.
            probabilities = np.array(self.model(tf.constant([ids], tf.int64), training=False)[0, -1])
            probabilities[:2] = 0  # never padding or [UNK]
            token = self.vocabulary[int(probabilities.argmax())]
            if token == self.boundary:
                break
            out += token
            ids.append(self.ids[token])
        return out

    def on_epoch_end(self, epoch, logs=None):
        rows = ["| prompt | continuation (greedy) |", "|---|---|"]
        rows += [f"| {p} | {self.continue_greedily(p)} |".replace("\n", " ") for p in self.prompts]
        with summary_writer(self.logdir).as_default():
            tf.summary.text("sample_continuations", "\n".join(rows), step=epoch + 1)


class EmbeddingProjector(keras.callbacks.Callback):
    """At the end of training: the learned token embedding in TensorBoard's Projector.

    The model's Embedding layer, or for a bag-of-n-grams model the first Dense
    kernel, whose first rows belong to the word vocabulary (its inputs come first). Writes a checkpoint of that matrix,
    metadata.tsv with the tokens, and projector_config.pbtxt, in the run folder.
    """

    def __init__(self, logdir: str, vocabulary: list[str]):
        super().__init__()
        self.logdir, self.vocabulary = logdir, vocabulary

    def matrix(self) -> np.ndarray | None:
        for layer in self.model.layers:
            if isinstance(layer, (keras.layers.Embedding, keras.layers.Dense)):
                weights = np.asarray(layer.get_weights()[0])
                if weights.shape[0] >= len(self.vocabulary):
                    return weights[:len(self.vocabulary)]
        return None

    def on_train_end(self, logs=None):
        from tensorboard.plugins import projector

        weights = self.matrix()
        if weights is None:
            return
        import os

        os.makedirs(self.logdir, exist_ok=True)
        with open(os.path.join(self.logdir, "metadata.tsv"), "w", encoding="utf-8") as f:
            for token in self.vocabulary:  # one token per line, no header for a single column
                f.write((repr(token)[1:-1] if token.strip() != token or not token else token) + "\n")
        checkpoint = tf.train.Checkpoint(embedding=tf.Variable(weights))
        checkpoint.save(os.path.join(self.logdir, "embedding.ckpt"))
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
        embedding.metadata_path = "metadata.tsv"
        projector.visualize_embeddings(self.logdir, config)

"""Keras callbacks the run function adds beside Keras' own TensorBoard (backups: training/backups.py).

Each one does one thing TensorBoard users expect and Keras does not do itself:
step-level scalars (working around a Keras bug), a per-step JSON log, plain-text progress for
non-terminals, the run's hyperparameters, sample predictions, a confusion
matrix, and a learned embedding in the Projector.
"""
from __future__ import annotations

import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api


def crossed(previous: int, now: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (previous, now]. With
    steps_per_execution > 1 Keras calls batch hooks only every k steps, so
    testing `now % every == 0` would miss most multiples."""
    return now // every > previous // every


def current_learning_rate(model) -> float:
    optimizer = model.optimizer
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


_writers: dict = {}


def summary_writer(logdir: str):
    """One writer per folder for the whole process, instead of a new event file per write."""
    if logdir not in _writers:
        _writers[logdir] = tf.summary.create_file_writer(logdir)
    return _writers[logdir]


def flush_writers() -> None:
    for writer in _writers.values():
        writer.flush()


class StepScalars(keras.callbacks.Callback):
    """Step-level loss, metrics and learning rate every N steps into <run>/train.

    Keras' own TensorBoard(update_freq=N) keeps `record_if(step % N == 0)`
    active through on_epoch_end, so every epoch-level summary (epoch metrics,
    histograms, images written by other callbacks) is silently dropped unless
    the epoch ends on a multiple of N (tensorflow/tensorboard issue 4975, seen
    with Keras 3.15.1). So Keras' callback runs with update_freq="epoch" and
    the step-level scalars come from here, with the optimizer's step count as x.
    """

    def __init__(self, logdir: str, every: int):
        super().__init__()
        self.logdir, self.every, self.last = logdir, every, None

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.last is None:  # the first step here (of a resumed run too): as if the one before it was logged
            self.last = step - self.model.steps_per_execution
        due = crossed(self.last, step, self.every)
        self.last = step
        if not due:
            return
        with summary_writer(self.logdir).as_default():
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"batch_{name}", value, step=step)
            tf.summary.scalar("batch_learning_rate", current_learning_rate(self.model), step=step)


class OpGraph(keras.callbacks.Callback):
    """The model's op graph for TensorBoard's Graphs tab. Keras 3's
    TensorBoard(write_graph=True) writes only the conceptual Keras graph: its
    train function has no `function_spec`, so the op graph is never written."""

    def __init__(self, logdir: str):
        super().__init__()
        self.logdir = logdir

    def on_train_begin(self, logs=None):
        # model.input keeps the model's own structure: one tensor, a list or a dict of named inputs.
        specs = keras.tree.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), self.model.input)
        forward = tf.function(lambda inputs: self.model(inputs, training=False))
        with summary_writer(self.logdir).as_default():
            tf.summary.graph(forward.get_concrete_function(specs).graph)


class StepLog(keras.callbacks.Callback):
    """One JSON line per training step: epoch and step in it (0-based), the
    optimizer's global step after it, and the step's logs. Machine-readable:
    the multi-worker test compares it with a single-process run, the resume
    tests check that every global step was trained once."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        row = {"epoch": self.epoch, "step": batch, "global_step": int(self.model.optimizer.iterations.numpy()),
               **{k: float(v) for k, v in (logs or {}).items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class PlainProgress(keras.callbacks.Callback):
    """A progress line every N steps when stdout is not a terminal (CI, nohup,
    docker logs), where Keras' progress bar would be one endless line."""

    def __init__(self, every: int, steps_per_epoch: int | None):
        super().__init__()
        self.every, self.steps = every, steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.start, self.last = epoch, time.time(), None

    def on_train_batch_end(self, batch, logs=None):
        if self.last is None:  # the epoch's first step here: 0, or k in an epoch resumed at step k
            self.first, self.last = batch, batch
        due = crossed(self.last, batch + 1, self.every)
        self.last = batch + 1
        if not due:
            return
        metrics = " ".join(f"{k}={v:.4g}" for k, v in (logs or {}).items())
        metrics += f" learning_rate={current_learning_rate(self.model):.3g}"
        total = f"/{self.steps}" if self.steps else ""
        rate = (batch + 1 - self.first) / max(time.time() - self.start, 1e-9)
        print(f"  epoch {self.epoch + 1} step {batch + 1}{total} ({rate:.1f} steps/s) {metrics}", flush=True)


def hparams_values(config) -> dict:
    """The run's hyperparameters in the types the HParams dashboard accepts."""
    flat = {k: v for k, v in vars(config).items() if k not in ("options", "hparams")}
    flat.update({f"option.{k}": v for k, v in config.options.items()})
    flat.update({f"hparam.{k}": v for k, v in config.hparams.items()})
    return {k: v for k, v in flat.items() if isinstance(v, (bool, int, float, str)) and k != "data_dir"}


class HParams(keras.callbacks.Callback):
    """Records the run's hyperparameters for TensorBoard's HParams dashboard.

    The dashboard pairs them with the scalars of the same run folder
    (validation/epoch_accuracy, test/test_accuracy, ...), so no metric list is
    declared here: it infers them from what the run actually logged.
    """

    def __init__(self, run_dir: str, values: dict, trial_id: str):
        super().__init__()
        self.run_dir, self.values, self.trial_id = run_dir, values, trial_id

    def on_train_begin(self, logs=None):
        with summary_writer(self.run_dir).as_default():
            hparams_api.hparams(self.values, trial_id=self.trial_id)


def write_scalars(logdir: str, values: dict, step: int) -> None:
    with summary_writer(logdir).as_default():
        for name, value in values.items():
            tf.summary.scalar(name, value, step=step)


def _grid(images: np.ndarray, columns: int) -> np.ndarray:
    """[N, H, W, 3] -> one [rows*H, columns*W, 3] image."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    canvas = np.zeros((rows * h, columns * w, c), images.dtype)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        canvas[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
    return canvas


class SamplePredictions(keras.callbacks.Callback):
    """After each epoch: a grid of fixed test images (wrong predictions tinted
    red) and a text table of predicted vs true class."""

    def __init__(self, logdir: str, images: np.ndarray, labels: np.ndarray, class_names, columns: int = 8):
        super().__init__()
        self.logdir, self.images, self.labels = logdir, images, labels
        self.class_names, self.columns = list(class_names), columns

    def on_epoch_end(self, epoch, logs=None):
        probabilities = self.model.predict(self.images, verbose=0)
        predicted = probabilities.argmax(-1)
        grey = self.images.astype(np.float32) / 255.0
        rgb = np.repeat(grey if grey.shape[-1] == 1 else grey[..., :1], 3, axis=-1)
        wrong = predicted != self.labels
        rgb[wrong, ..., 1:] *= 0.3  # keep red, dim green and blue
        rows = ["| # | predicted | p | true |", "|---|---|---|---|"]
        for i, (p, t) in enumerate(zip(predicted, self.labels)):
            mark = "" if p == t else " **wrong**"
            rows.append(f"| {i} | {self.class_names[p]} | {probabilities[i, p]:.3f} | {self.class_names[t]}{mark} |")
        with summary_writer(self.logdir).as_default():
            tf.summary.image("sample_predictions/images", _grid(rgb, self.columns)[None], step=epoch + 1)
            tf.summary.text("sample_predictions/table", "\n".join(rows), step=epoch + 1)


def confusion_matrix(labels, predicted, num_classes) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


class ConfusionMatrix(keras.callbacks.Callback):
    """At the end of training: the test set's confusion matrix as a heat-map image
    (rows: true class, columns: predicted; cell size by class count) and as a
    text table with the counts."""

    def __init__(self, logdir: str, dataset: tf.data.Dataset, class_names, cell: int = 24):
        super().__init__()
        self.logdir, self.dataset, self.class_names, self.cell = logdir, dataset, list(class_names), cell

    def on_train_end(self, logs=None):
        labels = np.concatenate([np.asarray(y) for _, y in self.dataset])
        predicted = self.model.predict(self.dataset, verbose=0).argmax(-1)
        n = len(self.class_names)
        matrix = confusion_matrix(labels, predicted, n)
        rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        # Log scale so the few off-diagonal errors stay visible next to the diagonal.
        heat = np.log1p(rates * 1000) / np.log1p(1000)
        image = np.stack([heat, heat * 0.35, 1 - heat], axis=-1)  # blue (0) -> red (1)
        image = np.kron(image, np.ones((self.cell, self.cell, 1)))
        header = "| true \\ predicted | " + " | ".join(self.class_names) + " |"
        rows = [header, "|" + "---|" * (n + 1)]
        rows += [f"| {self.class_names[i]} | " + " | ".join(str(c) for c in matrix[i]) + " |" for i in range(n)]
        step = int(self.model.optimizer.iterations.numpy())
        with summary_writer(self.logdir).as_default():
            tf.summary.image("confusion_matrix/image", image[None].astype(np.float32), step=step)
            tf.summary.text("confusion_matrix/counts", "\n".join(rows), step=step)


def progress_verbosity() -> int:
    """Keras' progress bar on a terminal; one line per epoch elsewhere."""
    return 1 if sys.stdout.isatty() else 2


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

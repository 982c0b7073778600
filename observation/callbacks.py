"""Keras callbacks the run function adds beside Keras' own TensorBoard (backups: training/backups.py).

Each one does one thing TensorBoard users expect and Keras does not do itself:
step-level scalars (working around a Keras bug), weight histograms in bounded memory, a per-step
JSON log, plain-text progress for non-terminals, the pictures an app draws (Pictures),
and a learned embedding in the Projector.
"""
from __future__ import annotations

import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf


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


HISTOGRAM_BUCKETS = 30  # TensorBoard's own default


def histogram_buckets(values, count: int = HISTOGRAM_BUCKETS) -> np.ndarray:
    """[count, 3] float64 rows of (left edge, right edge, how many), as TensorBoard's histogram summary stores
    them, counted with tf.histogram_fixed_width: 4 bytes of scratch per value. TensorBoard's own counting
    makes a [values, 30] float64 one-hot matrix, 240 bytes per value: 770 MB for a 3.2 million-weight kernel."""
    data = tf.reshape(tf.cast(values, tf.float32), [-1])
    data = tf.boolean_mask(data, tf.math.is_finite(data))
    if int(tf.size(data)) == 0:
        return np.zeros((count, 3))
    low, high = float(tf.reduce_min(data)), float(tf.reduce_max(data))
    if low == high:  # one value: TensorBoard's layout, every count in the last bucket
        counts = np.zeros(count)
        counts[-1] = int(tf.size(data))
        return np.stack([np.full(count, high), np.full(count, high), counts], axis=1)
    counts = tf.histogram_fixed_width(data, [low, high], nbins=count).numpy().astype(np.float64)
    edges = np.linspace(low, high, count + 1)
    edges[-1] = high
    return np.stack([edges[:-1], edges[1:], counts], axis=1)


class WeightHistograms(keras.callbacks.Callback):
    """Every weight's histogram in TensorBoard every `every` epochs, under the tags Keras' TensorBoard gives
    them (histogram_freq), counted in bounded memory (histogram_buckets): Keras' own took a text model's
    run from 1.4 to 2.2 GB at its first epoch's end."""

    def __init__(self, logdir: str, every: int):
        super().__init__()
        self.logdir, self.every = logdir, every

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every:
            return
        from tensorboard.plugins.histogram import metadata

        with summary_writer(self.logdir).as_default():
            for layer in self.model.layers:
                for weight in layer.weights:
                    tf.summary.write(f"{weight.path.replace(':', '_')}/histogram",
                                     tf.constant(histogram_buckets(weight.value), tf.float64), step=epoch,
                                     metadata=metadata.create_summary_metadata(display_name=None, description=None))


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
    optimizer's global step after it, the wall-clock time it ended at and the
    step's logs. Machine-readable: the multi-worker test compares it with a
    single-process run, the resume tests check that every global step was
    trained once, the benchmarks take step times from it."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        row = {"epoch": self.epoch, "step": batch, "global_step": int(self.model.optimizer.iterations.numpy()),
               "time": round(time.time(), 4), **{k: float(v) for k, v in (logs or {}).items()}}
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


def write_scalars(logdir: str, values: dict, step: int) -> None:
    with summary_writer(logdir).as_default():
        for name, value in values.items():
            tf.summary.scalar(name, value, step=step)


def confusion_matrix(labels, predicted, num_classes) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


class Pictures(keras.callbacks.Callback):
    """What an app draws from the model for people to look at, in TensorBoard's Images and Text tabs.

    epoch_end(model, when) and train_end(model, when) return {tag: figure or
    markdown}; `when` says which model state it is ("after epoch 3"). Figures
    (observation/figures.py) become images, strings text. Epoch pictures are at
    step epoch + 1; the end-of-training ones at the optimizer's global step.
    train_begin() returns what the data looked like as training started (a
    user's table: its columns and its target), at step 0.
    """

    def __init__(self, logdir: str, epoch_end=None, train_end=None, train_begin=None):
        super().__init__()
        self.logdir, self.epoch_end, self.train_end, self.train_begin = logdir, epoch_end, train_end, train_begin

    def write(self, pictures: dict, step: int) -> None:
        from observation.figures import figure_image

        with summary_writer(self.logdir).as_default():
            for tag, picture in pictures.items():
                if isinstance(picture, str):
                    tf.summary.text(tag, picture, step=step)
                else:
                    tf.summary.image(tag, figure_image(picture)[None], step=step)

    def only(self, when: str):
        """--pictures: every_epoch (as drawn), end (the end-of-training pictures only) or none (None)."""
        if when == "none":
            return None
        if when == "end":
            self.epoch_end = None
        return self

    def on_train_begin(self, logs=None):
        if self.train_begin is not None:
            self.write(self.train_begin(), 0)

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch_end is not None:
            self.write(self.epoch_end(self.model, f"after epoch {epoch + 1}"), epoch + 1)

    def on_train_end(self, logs=None):
        if self.train_end is not None:
            step = int(self.model.optimizer.iterations.numpy())
            self.write(self.train_end(self.model, f"end of training, step {step:,}"), step)


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

"""One trial of a search: an app's model with the trial's hyperparameters, on the app's own pipelines.

AppHyperModel is the bridge Keras Tuner asks for: build(hp) turns the trial's
values into a RunConfig (core/config.py: apply_hparams), loads the app's data
and builds its model exactly as `python -m apps.<app>` would; fit() trains it
on the app's tf.data pipelines with the callbacks every trial gets:

- early stopping on the objective (--patience);
- NaN loss ends the trial as FAILED (Keras Tuner records it, the search goes on);
- the --time-budget deadline stops the trial at its next epoch end;
- a running best of the objective per epoch in the trial's TensorBoard run, so
  the HParams dashboard shows each trial's best value, not its last;
- the process's resident memory after the trial, to show it stays flat.

--folds K replaces the fixed validation split with K-fold cross-validation
over train + validation: on a small data set (Auto MPG validates on 63 cars)
one split ranks configurations by luck more than by merit.
"""
from __future__ import annotations

import json
import math
import os
import resource
import time
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp_api

from pipelines.input import labelled_subset
from observation.hparams import objective_direction
from core.config import apply_hparams
from training import accounting, privacy
from training.run import JIT, build_pipelines
from training.transfer import Transfer

# Keras Tuner's own bookkeeping values (Hyperband's epochs and rounds), not the model's.
TUNER_KEYS = "tuner/"


def model_values(hp) -> dict:
    return {k: v for k, v in hp.values.items() if not k.startswith(TUNER_KEYS)}


def resident_mb() -> float:
    """This process's current resident memory in MB (Linux /proc), else its peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class AppHyperModel(keras_tuner.HyperModel):
    """The app's model family (ModelSpec.space + ModelSpec.build) as a Keras Tuner HyperModel."""

    def __init__(self, app, base, search_dir: Path, objective: str, patience: int, deadline: float | None,
                 static_shapes: bool = False, folds: int = 1):
        super().__init__(name=f"{app.NAME}_{base.model}")
        self.app, self.base, self.search_dir = app, base, search_dir
        self.spec = app.MODELS[base.model]
        self.objective, self.patience, self.deadline = objective, patience, deadline
        self.static_shapes, self.folds = static_shapes, folds
        self.declaring = False  # True while a tuner's constructor builds once only to read the space
        self._data_key, self._splits = None, None  # one data set at a time keeps memory flat
        self._trial = None

    def trial_config(self, hp):
        """The RunConfig of the trial: the base command line with the trial's values applied."""
        config = apply_hparams(self.base, model_values(hp))
        return apply_hparams(config, {"epochs": hp.values.get("tuner/epochs", self.base.epochs)})

    def _data(self, config):
        # Only what load_data reads decides the data: the app's flags (vocabulary
        # sizes, sequence length, ...), the source and the slice.
        # --train-examples draws its subset by --seed, which no trial changes.
        key = json.dumps([config.options, config.data_source, config.data_dir, config.smoke], sort_keys=True)
        if key != self._data_key:
            self._splits, self._data_key = None, None  # drop the old data set before loading the next
            splits = self.app.load_data(config)
            if config.train_examples:
                splits = splits._replace(train=labelled_subset(splits.train, config.train_examples, config.seed))
            self._splits, self._data_key = splits, key
        return self._splits

    def fold(self, splits, fold: int):
        """Fold `fold` of --folds over train + validation: every folds-th example
        from the fold-th on validates, the rest train."""
        if self.folds == 1:
            return splits
        pool = splits.train.concatenate(splits.validation)
        n = int(pool.cardinality())
        n = n if n >= 0 else int(pool.reduce(0, lambda count, _: count + 1))
        size = len(range(fold, n, self.folds))

        def part(held_out: bool, count: int):
            picked = pool.enumerate().filter(lambda i, _: tf.equal(i % self.folds, fold) == held_out)
            return picked.map(lambda _, example: example).apply(tf.data.experimental.assert_cardinality(count))

        return splits._replace(train=part(False, n - size), validation=part(True, size))

    def _model(self, config, splits):
        batches, validation, _ = build_pipelines(self.app, config, splits, static_shapes=self.static_shapes)
        steps = batches.steps_per_epoch
        model, compile_kwargs = self.spec.build(config, splits, steps if steps > 0 else None)
        if config.init_from:  # every trial starts from the same trained model's matching layers
            transfer = Transfer(config)
            print("\n".join(transfer.load(model)), flush=True)
            transfer.set_trainable(epoch=0)
        model.compile(**compile_kwargs, jit_compile=JIT[config.xla], steps_per_execution=config.steps_per_execution)
        if config.dp:  # each trial spends its own epsilon on the same private data (docs/privacy.md)
            privacy.check_model(model, config.model, self.app)
            privacy.make_private(model, accounting.plan(config, batches.examples, batches.steps_per_epoch))
        # A trial is rerun whole if killed, so one fit() over a pipeline that reshuffles every epoch is enough.
        self._trial = (config, batches.reshuffled(), validation)
        return model

    def build(self, hp):
        self.spec.space(hp)  # registers the space on the first call; values come from the trial
        if self.declaring:
            return None  # no data, no model: the tuner only wanted the space
        config = self.trial_config(hp)
        if hasattr(self.app, "check_config"):
            self.app.check_config(config)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if config.batch_size % replicas:
            raise keras_tuner.errors.FailedTrialError(
                f"batch size {config.batch_size} does not split over {replicas} replicas")
        return self._model(config, self.fold(self._data(config), 0))

    def fit(self, hp, model, *args, callbacks=(), **kwargs):
        config, train, validation = self._trial
        callbacks = list(callbacks)
        board = next((c for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)), None)
        kwargs.pop("epochs", None)
        started = time.time()
        try:
            if self.folds == 1:
                callbacks += [keras.callbacks.EarlyStopping(self.objective, patience=self.patience),
                              FailOnNaN(), Deadline(self.deadline)]
                if board is not None:
                    callbacks.append(RunningBest(board.log_dir, self.objective))
                return model.fit(train, validation_data=validation, epochs=config.epochs, callbacks=callbacks,
                                 shuffle=False, **kwargs)
            return self._fit_folds(config, model, callbacks, board, kwargs)
        finally:
            self._trial = None  # the trial's pipelines go with it
            with open(self.search_dir / "trials.jsonl", "a") as log:
                trial = Path(board.log_dir).parent.name if board is not None else None  # <search>/<trial>/execution0
                log.write(json.dumps({"trial": trial, "tuner": os.environ.get("KERASTUNER_TUNER_ID", "local"),
                                      "pid": os.getpid(), "hparams": model_values(hp),
                                      "seconds": round(time.time() - started, 1),
                                      "resident_mb": round(resident_mb(), 1)}) + "\n")

    def _fit_folds(self, config, model, callbacks, board, kwargs):
        """--folds K: K models, each validated on its own fold, trained for all the
        trial's epochs (early stopping would leave curves of different lengths);
        the trial's curve is the folds' mean epoch by epoch, and its score and
        best epoch come from that curve's trailing mean over SMOOTHING epochs.
        TensorBoard gets the mean curves, the score's running best and the
        HParams session."""
        curves = []
        for fold in range(self.folds):
            if fold:
                model = self._model(config, self.fold(self._data(config), fold))
            print(f"fold {fold + 1}/{self.folds}", flush=True)
            _, train, validation = self._trial
            history = model.fit(train, validation_data=validation, epochs=config.epochs, shuffle=False,
                                callbacks=[FailOnNaN(), Deadline(self.deadline)], **kwargs)
            curves.append(history.history)
        epochs = min(len(next(iter(c.values()))) for c in curves)  # a deadline may cut a fold short
        mean = {k: [sum(c[k][e] for c in curves) / len(curves) for e in range(epochs)] for k in curves[0]}
        scored = keras.callbacks.History()
        scored.history = {**mean, self.objective: trailing_mean(mean[self.objective], SMOOTHING)}
        if board is not None:
            write_mean_curves(board.log_dir, mean, scored.history[self.objective], self.objective)
            session = next((c for c in callbacks if isinstance(c, hp_api.KerasCallback)), None)
            if session is not None:  # Keras Tuner's HParams record of the trial
                session.set_model(model)
                session.on_train_begin()
                session.on_train_end()
        return scored


# A cross-validated trial is scored on its objective averaged over this many
# epochs. The best single epoch of a jittery curve (a high learning rate, small
# batches) is partly luck: scored on it, a 5-fold regression search picked such
# a configuration, and its retrained model, which stops wherever the jitter
# happens to be, lost to the default on the test set.
SMOOTHING = 5


def trailing_mean(values: list[float], window: int) -> list[float]:
    """values[e] replaced by the mean of values[e - window + 1 .. e] (fewer at the start)."""
    windows = (values[max(0, e - window + 1):e + 1] for e in range(len(values)))
    return [sum(w) / len(w) for w in windows]


def write_mean_curves(log_dir: str, history: dict, score: list[float], objective: str) -> None:
    """Where Keras' TensorBoard callback would have put them (train/, validation/,
    epoch_<metric>), plus the running best of the trial's score (the objective's
    trailing mean, see SMOOTHING)."""
    for split, keys in (("train", [k for k in history if not k.startswith("val_")]),
                        ("validation", [k for k in history if k.startswith("val_")])):
        with tf.summary.create_file_writer(os.path.join(log_dir, split)).as_default():
            for key in keys:
                for epoch, value in enumerate(history[key]):
                    tf.summary.scalar(f"epoch_{key.removeprefix('val_')}", value, step=epoch)
    best = RunningBest(log_dir, objective)
    for epoch, value in enumerate(score):
        best.on_epoch_end(epoch, {objective: value})


class FailOnNaN(keras.callbacks.Callback):
    """A NaN or infinite loss fails the trial at once (recorded as FAILED, the search goes on)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise keras_tuner.errors.FailedTrialError(f"loss became {float(loss)} at batch {batch}")


class Deadline(keras.callbacks.Callback):
    """Stops training at the first epoch end past the search's time budget."""

    def __init__(self, deadline: float | None):
        super().__init__()
        self.deadline = deadline

    def on_epoch_end(self, epoch, logs=None):
        if self.deadline is not None and time.time() >= self.deadline:
            print(f"time budget spent: this trial stops after epoch {epoch + 1}", flush=True)
            self.model.stop_training = True


class RunningBest(keras.callbacks.Callback):
    """Writes best_<objective> (the best value so far) per epoch into the trial's
    TensorBoard run. The HParams dashboard shows a metric's last value; for this
    one that is the trial's best."""

    def __init__(self, log_dir: str, objective: str):
        super().__init__()
        self.log_dir, self.objective = log_dir, objective
        self.better = max if objective_direction(objective) == "max" else min
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.objective)
        if value is None or not math.isfinite(float(value)):
            return
        self.best = float(value) if self.best is None else self.better(self.best, float(value))
        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            tf.summary.scalar(f"best_{self.objective}", self.best, step=epoch)
        writer.close()

"""Backups for resume: the whole training state at a step, written so that no kill leaves a wrong one.

A backup is a folder RUN/backup/step-<global step>/ holding
  variables.npz  every variable that decides what the next step does: the
                 model's weights (batch-norm statistics included), the random
                 seed state of its dropout layers, the optimizer's slots and step
                 counter (so the learning-rate schedule's position), and the
                 epoch's running metrics;
  state.json     where training stands (epoch, step in it, global step), the
                 configuration it was written under, and variables.npz's sha256.
The data order is not stored: TrainingBatches derives it from --seed and the epoch.

Written as a hidden .tmp folder, flushed to disk, then renamed into place (a
rename is atomic), and only then are the older ones pruned to the newest KEEP.
A kill at any moment leaves the previous backups whole and at most a .tmp
folder, which the next start removes. A backup whose files do not match
their checksums is reported, set aside as damaged-<name>, and the one before
it is used; if none can be used the run stops and says what to do, and never
starts over by itself.

Every worker of a multi-worker run keeps its own (backup-worker1/, ...); on
resume they agree on the newest step all of them hold.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from pipelines.mirror import sha256_of
from observation.callbacks import crossed
from core.config import differences
from core.errors import UsageError
from training.preemption import StopPoint, Stopped, signal_name
from training.resume import Position
from training.strategy import from_every_worker

KEEP = 2  # the newest two: a kill while the newer is pruned or written still leaves one
FORMAT = 1
FRESH_HINT = "rerun with --fresh to start a new run beside it (the backups stay where they are)"


class Damaged(Exception):
    """A backup whose files are missing, truncated or changed."""


def training_variables(model) -> list:
    """The variables a backup holds, in a fixed order: model (weights and seed
    states), optimizer, metrics. Needs a built optimizer (fit() builds it)."""
    return [*model.variables, *model.optimizer.variables, *model.metrics_variables]


def describe_variables(variables) -> list:
    return [[v.path, list(v.shape), str(v.dtype)] for v in variables]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BackupFolder:
    """The backups of one process of a run, newest first."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def complete(self) -> list[Path]:
        found = [p for p in self.root.glob("step-*") if p.is_dir()] if self.root.exists() else []
        return sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True)

    def clear_torn(self) -> None:
        """Remove what a kill during a write left behind (never a complete backup)."""
        for torn in self.root.glob(".tmp-*") if self.root.exists() else ():
            shutil.rmtree(torn, ignore_errors=True)

    def read(self, path: Path, arrays: bool = True) -> tuple[dict, dict]:
        """(state, arrays) of a backup, or Damaged saying what is wrong with it.
        arrays=False: verify the files against their checksums, load nothing."""
        try:
            state = json.loads((path / "state.json").read_text())
            for name, digest in state["files"].items():
                if sha256_of(path / name) != digest:
                    raise Damaged(f"{name} does not match its checksum: truncated or changed")
            if not arrays:
                return state, {}
            with np.load(path / "variables.npz") as npz:
                values = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, KeyError) as err:  # missing files, broken JSON or zip
            raise Damaged(f"{type(err).__name__}: {err}") from None
        if len(values) != len(state["variables"]):
            raise Damaged(f"holds {len(values)} arrays, its state lists {len(state['variables'])}")
        return state, values

    def set_aside(self, path: Path) -> Path:
        aside = path.with_name(f"damaged-{path.name}")
        os.replace(path, aside) if not aside.exists() else shutil.rmtree(path)
        return aside

    def write(self, state: dict, arrays: list) -> Path:
        final = self.root / f"step-{state['global_step']:09d}"
        tmp = self.root / f".tmp-{final.name}-{os.getpid()}"
        tmp.mkdir(parents=True)
        with open(tmp / "variables.npz", "wb") as f:
            np.savez(f, **{f"{i:05d}": a for i, a in enumerate(arrays)})
            f.flush()
            os.fsync(f.fileno())
        state = {**state, "files": {"variables.npz": sha256_of(tmp / "variables.npz")}}
        with open(tmp / "state.json", "w") as f:
            f.write(json.dumps(state, indent=1))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():  # the same step again (a resume that fell back past it)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.root)
        for old in self.complete()[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)
        return final


class Restore:
    """The backup a run resumes from: where it stands and the values to load."""

    PARTS = ("model", "optimizer", "metrics")  # the order training_variables() lists them in

    def __init__(self, path: Path, state: dict, arrays: dict):
        self.path, self.state, self.arrays = path, state, arrays
        self.position = Position(state["epoch"], state["step"], state["global_step"])

    def _span(self, *parts) -> range:
        counts = self.state["parts"]
        start = sum(counts[p] for p in self.PARTS[:self.PARTS.index(parts[0])])
        return range(start, start + sum(counts[p] for p in parts))

    def check(self, variables, *parts: str) -> None:
        """That `variables` have the shapes and dtypes of the backup's `parts` (default: the model's).
        Not their names: Keras numbers layer names per process (dense, dense_1, ...),
        so the same model built after another one has other names."""
        span = self._span(*(parts or ("model",)))
        saved = [self.state["variables"][i] for i in span]
        for (path, shape, dtype), v in zip(saved, variables):
            if list(v.shape) != shape or str(v.dtype) != dtype:
                raise UsageError(f"backup {self.path} does not fit this model: it has {path} {tuple(shape)}, this "
                                 f"model {v.path} {tuple(v.shape)} (written by "
                                 f"another model or version of the code); {FRESH_HINT}")
        if len(saved) != len(variables):
            raise UsageError(f"backup {self.path} has {len(saved)} variables where this model has {len(variables)} "
                             f"(written by another model or version of the code); {FRESH_HINT}")

    def _assign(self, variables, *parts: str) -> None:
        self.check(variables, *parts)
        for i, v in zip(self._span(*parts), variables):
            v.assign(self.arrays[f"{i:05d}"])

    def load(self, model) -> None:
        """The weights, seed states and optimizer (built here if no fit() has built it yet:
        a run resumed after its last epoch trains nothing before it is tested and exported)."""
        if not model.optimizer.built:
            with model.distribute_strategy.scope():
                model.optimizer.build(model.trainable_variables)
        self._assign([*model.variables, *model.optimizer.variables], "model", "optimizer")

    def load_metrics(self, model) -> None:
        """The epoch's running metrics, for a resume mid-epoch: once fit() has built
        them and reset them at the epoch's start."""
        self._assign(model.metrics_variables, "metrics")


def restore_point(folder: BackupFolder, record: dict, strategy, steps_per_epoch: int, source: str) -> Restore | None:
    """The backup to resume from (None: start at the beginning).

    record: the run's model-defining configuration (RunConfig.record()); a
    backup written under another one is refused. Under MultiWorkerMirroredStrategy
    this is a collective: every worker calls it, and all pick the newest step all hold.
    """
    folder.clear_torn()
    usable, damaged = [], []
    for path in folder.complete():
        try:
            state, _ = folder.read(path, arrays=False)
        except Damaged as err:
            aside = folder.set_aside(path)
            damaged.append(f"{path.name}: {err}")
            print(f"backup {path} cannot be loaded ({err}); set aside as {aside.name}, trying the one before it",
                  flush=True)
            continue
        usable.append((state["global_step"], path))
    if not usable:  # damaged ones set aside by an earlier start count too: never a silent fresh start
        now = {f"damaged-{d.split(':')[0]}" for d in damaged}
        damaged += [f"{p.name}, set aside before" for p in sorted(folder.root.glob("damaged-*")) if p.name not in now]
    newest = from_every_worker(strategy, usable[0][0] if usable else -1)
    if not damaged and max(newest) < 0:
        return None  # killed before its first backup: nothing to resume
    if damaged and not usable:
        raise UsageError(f"no backup in {folder.root} can be used ({'; '.join(damaged)}); {FRESH_HINT}, or remove "
                         f"{folder.root} to start this run over")
    if min(newest) < 0:
        raise UsageError("the workers do not all hold a backup of this run "
                         f"(their newest global steps: {newest}); {FRESH_HINT}")
    agreed = min(newest)
    path = next((p for step, p in usable if step == agreed), None)
    if path is None:
        raise UsageError("the workers' newest common backup is at global step "
                         f"{agreed}, which {folder.root} does not hold; {FRESH_HINT}")
    state, arrays = folder.read(path)
    if state.get("config") != record:
        raise UsageError(f"backup {path} was written by a run with other settings "
                         f"({differences(state.get('config') or {}, record)}); "
                         f"rerun with the same flags, or {FRESH_HINT}")
    if state["steps_per_epoch"] != steps_per_epoch:
        raise UsageError(f"backup {path} was written when an epoch had {state['steps_per_epoch']} steps, now it has "
                         f"{steps_per_epoch}: the training data changed; {FRESH_HINT}")
    if state.get("source") != source:
        print(f"note: backup {path.name} was written training on {state.get('source')}, this run reads {source}: it "
              "resumes, but not on exactly the batches the first run would have had", flush=True)
    return Restore(path, state, arrays)


class Backups(keras.callbacks.Callback):
    """Writes the run's backups, loads the one it resumes from, and stops the run when asked.

    Backups: every `every` global steps and at every epoch end (after the
    epoch's validation and logs). A stop requested by a signal (StopSignals)
    is taken at the end of the step in flight (StopPoint: on several workers,
    the next step end, the same on all): backup, then Stopped. A stop in an
    epoch's last step waits for the epoch's end (its validation and logs), so
    a backup is never at a position with an epoch-end still owed.
    Must come last among the callbacks, so everything a step logs is written
    before a backup at it.
    """

    def __init__(self, folder: BackupFolder, *, every: int, steps_per_epoch: int | None, record: dict, source: str,
                 strategy, stops, restore: Restore | None = None):
        super().__init__()
        self.folder, self.every, self.steps = folder, every, steps_per_epoch
        self.record, self.source, self.strategy, self.stops = record, source, strategy, stops
        self.restore = restore
        self.last_step = restore.position.global_step if restore else 0
        self.epoch, self.seconds, self.written = 0, 0.0, 0

    def on_train_begin(self, logs=None):
        self.stops.start_training()
        self.stop = StopPoint(self.stops, self.strategy, self.model.steps_per_execution)
        if self.restore is not None:
            self.restore.load(self.model)

    def on_train_end(self, logs=None):
        self.stops.graceful = False
        self.stop.close()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.restore is not None:
            if self.restore.position.step:
                self.restore.load_metrics(self.model)
            self.restore = None

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        done = batch + 1  # steps of this epoch done
        mid_epoch = self.steps is None or done < self.steps  # the epoch's last step is backed up at its end
        due = crossed(self.last_step, step, self.every)
        self.last_step = step
        signum = self.stop.at(step)
        if mid_epoch and (signum or due):
            path = self._write(Position(self.epoch, done, step), signal_name(signum) if signum
                               else f"every {self.every} steps")
            signum = signum or self.stop.at(step)  # a signal that came during the write
            if signum:
                self._stop(signum, Position(self.epoch, done, step), path)

    def on_epoch_end(self, epoch, logs=None):
        position = Position(epoch + 1, 0, int(self.model.optimizer.iterations.numpy()))
        path = self._write(position, "epoch end")
        signum = self.stop.at(position.global_step)
        if signum:
            self._stop(signum, position, path)

    def _write(self, position: Position, reason: str) -> Path:
        started = time.perf_counter()
        model = self.model
        parts = {"model": len(model.variables), "optimizer": len(model.optimizer.variables),
                 "metrics": len(model.metrics_variables)}
        variables = training_variables(model)
        state = {"format": FORMAT, **position._asdict(), "steps_per_epoch": self.steps, "reason": reason,
                 "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": self.source, "config": self.record,
                 "parts": parts, "variables": describe_variables(variables)}
        path = self.folder.write(state, [np.asarray(v.numpy()) for v in variables])
        self.seconds += time.perf_counter() - started
        self.written += 1
        return path

    def _stop(self, signum: int, position: Position, path: Path):
        elsewhere = "" if self.stops.received == signum else " (sent to another worker)"
        raise Stopped(signum, f"{signal_name(signum)}{elsewhere}, {position.describe(self.steps)}; backup {path}; "
                              "rerun the same command to resume there")

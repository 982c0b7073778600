"""Backups in-process: atomic writes, pruning, checksums, which backup a run resumes
from, a backup of another model, and the run-long callback list of resumed epochs.
(Kills, signals and whole runs: tests/test_resume.py.)"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipelines.input import TrainingBatches
from training.backups import KEEP, BackupFolder, Damaged, Restore, restore_point
from core.config import differences
from core.errors import UsageError
from training.resume import Position, RunCallbacks, train

RECORD = {"model": "m", "epochs": 3}
DEFAULT = tf.distribute.get_strategy()


def _write(folder, step, record=RECORD, steps_per_epoch=10):
    state = {"epoch": step // steps_per_epoch, "step": step % steps_per_epoch, "global_step": step,
             "steps_per_epoch": steps_per_epoch, "config": record, "source": "here",
             "variables": [["w", [2], "float32"]], "parts": {"model": 1, "optimizer": 0, "metrics": 0}}
    return folder.write(state, [np.full(2, step, np.float32)])


def test_writes_are_whole_or_absent_and_only_the_newest_are_kept(tmp_path):
    folder = BackupFolder(tmp_path / "backup")
    for step in (10, 20, 30):
        _write(folder, step)
    assert [p.name for p in folder.complete()] == ["step-000000030", "step-000000020"] and KEEP == 2
    state, arrays = folder.read(folder.complete()[0])
    assert state["global_step"] == 30 and arrays["00000"].tolist() == [30, 30]
    torn = tmp_path / "backup" / ".tmp-step-000000040-123"  # what a kill in mid-write leaves
    torn.mkdir()
    (torn / "variables.npz").write_bytes(b"half")
    restore = restore_point(folder, RECORD, DEFAULT, 10, "here")
    assert restore.position == Position(3, 0, 30) and not torn.exists()


def test_a_changed_byte_is_found_and_the_previous_backup_used(tmp_path, capsys):
    folder = BackupFolder(tmp_path / "backup")
    _write(folder, 10)
    newest = _write(folder, 15)
    raw = bytearray((newest / "variables.npz").read_bytes())
    raw[len(raw) // 2] ^= 1
    (newest / "variables.npz").write_bytes(bytes(raw))
    with pytest.raises(Damaged, match="does not match its checksum"):
        folder.read(newest)
    restore = restore_point(folder, RECORD, DEFAULT, 10, "here")
    assert restore.position == Position(1, 0, 10)
    assert "step-000000015 cannot be loaded" in capsys.readouterr().out
    assert (tmp_path / "backup" / "damaged-step-000000015").exists()


def test_no_usable_backup_stops_the_run_every_time_it_is_tried(tmp_path):
    folder = BackupFolder(tmp_path / "backup")
    path = _write(folder, 10)
    (path / "state.json").write_text("{ cut off")
    for _ in range(2):  # the second time, the backup is already set aside: still refused
        with pytest.raises(UsageError, match=r"no backup in .* can be used .* --fresh"):
            restore_point(folder, RECORD, DEFAULT, 10, "here")
    assert restore_point(BackupFolder(tmp_path / "none"), RECORD, DEFAULT, 10, "here") is None  # nothing yet: start


def test_another_configuration_or_other_data_is_refused(tmp_path):
    folder = BackupFolder(tmp_path / "backup")
    _write(folder, 10, record={"model": "m", "epochs": 4})
    with pytest.raises(UsageError, match=r"other settings \(--epochs 3 \(was 4\)\)"):
        restore_point(folder, RECORD, DEFAULT, 10, "here")
    with pytest.raises(UsageError, match="an epoch had 10 steps, now it has 12"):
        restore_point(folder, {"model": "m", "epochs": 4}, DEFAULT, 12, "here")


def test_differences_name_flags_as_typed():
    old = {"epochs": 3, "learning_rate": None, "options": {"task": "sentiment"}, "hparams": {"units": 64}}
    new = {"epochs": 3, "learning_rate": 0.01, "options": {"task": "lm"}, "hparams": {"units": 32}}
    assert differences(old, new) == ("hyperparameter units 32 (was 64), --learning-rate 0.01 (was the model's "
                                     "default), --task lm (was sentiment)")


def _model(units=4):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units, name="hidden"), keras.layers.Dropout(0.5),
                              keras.layers.Dense(1, name="out")])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


def _data():
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True)))


def test_a_backup_of_another_model_is_refused_with_what_differs(tmp_path):
    from training.backups import describe_variables, training_variables

    small, large = _model(4), _model(8)
    for model in (small, large):
        model.fit(_data().batch(8), epochs=1, verbose=0)  # builds optimizer and metrics
    variables = training_variables(small)
    state = {"epoch": 0, "step": 2, "global_step": 2, "variables": describe_variables(variables),
             "parts": {"model": len(small.variables), "optimizer": len(small.optimizer.variables), "metrics": 4}}
    restore = Restore(tmp_path, state, {f"{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)})
    with pytest.raises(UsageError, match=r"does not fit this model: it has sequential\w*/hidden/kernel \(3, 4\), this "
                                         r"model sequential\w*/hidden/kernel \(3, 8\)"):
        restore.check(large.variables)
    restore.check(small.variables)  # the same model: every value goes back, the dropout seed state included
    i, seed = next((i, v) for i, v in enumerate(variables) if "seed" in v.path)
    seed.assign(np.array([7, 7], seed.dtype))
    restore.load(small)
    assert np.array_equal(seed.numpy(), restore.arrays[f"{i:05d}"])


def test_the_callbacks_see_one_run_and_a_resumed_epochs_own_step_numbers():
    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.events = []

        def on_train_begin(self, logs=None):
            self.events.append("begin")

        def on_train_end(self, logs=None):
            self.events.append("end")

        def on_epoch_begin(self, epoch, logs=None):
            self.events.append(f"epoch {epoch}")

        def on_train_batch_end(self, batch, logs=None):
            self.events.append(batch)

    model, record = _model(), Record()
    batches = TrainingBatches(_data(), global_batch=8, seed=1)  # 5 steps an epoch
    callbacks = RunCallbacks([record], model=model, epochs=3, steps=5, verbose=0)
    train(model, batches, None, epochs=3, start=Position(1, 3, 8), callbacks=callbacks)
    assert record.events == ["begin", "epoch 1", 3, 4, "epoch 2", 0, 1, 2, 3, 4, "end"]
    assert int(model.optimizer.iterations.numpy()) == 7  # 2 + 5 steps: nothing more, nothing less
    assert callbacks.params == {"verbose": 0, "epochs": 3, "steps": 5}


def test_a_signal_in_an_epochs_last_step_is_taken_at_its_end_after_validation(tmp_path):
    """A stop asked for during the last step waits for the epoch's validation and
    logs, so no backup is ever at a position with an epoch's end still owed."""
    import os
    import signal

    from training.backups import Backups
    from training.preemption import Stopped, requests

    class SignalInLastStep(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_ends = []

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 4:  # the last of the epoch's 5 steps
                os.kill(os.getpid(), signal.SIGTERM)

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_ends.append(sorted(logs))

    model, seen = _model(), SignalInLastStep()
    batches = TrainingBatches(_data(), global_batch=8, seed=1)
    folder = BackupFolder(tmp_path / "backup")
    backups = Backups(folder, every=2, steps_per_epoch=5, record=RECORD, source="here", strategy=DEFAULT,
                      stops=requests)
    callbacks = RunCallbacks([seen, backups], model=model, epochs=3, steps=5, verbose=0)
    with requests.installed("rerun it"), pytest.raises(Stopped) as stop:
        train(model, batches, _data().batch(8), epochs=3, start=Position(0, 0, 0), callbacks=callbacks)
    assert stop.value.message.startswith("SIGTERM, at the end of epoch 1 (global step 5); backup ")
    assert seen.epoch_ends == [["loss", "mae", "val_loss", "val_mae"]]  # validated before it stopped
    assert [p.name for p in folder.complete()] == ["step-000000005", "step-000000004"]  # the epoch end, every 2 steps
    assert json.loads((folder.complete()[0] / "state.json").read_text())["reason"] == "epoch end"

"""Training from where a run stands: epoch by epoch, the first epoch from its exact step.

Keras 3.15's fit() iterates one dataset object for every epoch and cannot
start an epoch part-way (BackupAndRestore restores the epoch, not the step).
So the run calls fit() once per epoch, each time on that epoch's own batches
(pipelines/input.py: TrainingBatches.epoch), and a resumed run's first epoch
starts at the step its backup reached. Calling fit() per epoch costs nothing
measurable (30 one-epoch fits of the regression ensemble took as long as one
30-epoch fit), and every epoch ends where its data ends, whatever
--steps-per-execution is.

RunCallbacks makes the callbacks see one run rather than one fit per epoch.
"""
from __future__ import annotations

from typing import NamedTuple

import keras


class Position(NamedTuple):
    """Where training stands: the next step is step `step` (0-based) of epoch `epoch`."""

    epoch: int
    step: int
    global_step: int  # optimizer steps taken so far, over all epochs

    def describe(self, steps_per_epoch: int | None) -> str:
        """'at the end of epoch 1 (global step 64)' or 'in epoch 2 after step 26 of 64 (global step 90)'."""
        if self.step == 0:
            return f"at the end of epoch {self.epoch} (global step {self.global_step})"
        return (f"in epoch {self.epoch + 1} after step {self.step} of "
                f"{steps_per_epoch or '?'} (global step {self.global_step})")


START = Position(0, 0, 0)


class RunCallbacks(keras.callbacks.CallbackList):
    """The run's callbacks as one list across the per-epoch fit() calls.

    on_train_begin/on_train_end come from begin()/end(), once per run, not
    from each fit(): TensorBoard keeps its writers and its profiling window,
    the confusion matrix is drawn once, at the end. Batch indices are the
    epoch's own: in a resumed epoch that starts at step k, Keras' batch 0 is
    reported as batch k (progress bar, step log, backups).
    """

    def __init__(self, callbacks, *, model, epochs: int, steps: int | None, verbose: int):
        super().__init__(callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose,
                         epochs=epochs, steps=steps, model=model)
        self.first_step = 0  # the epoch's step that fit()'s batch 0 is

    def on_train_begin(self, logs=None):
        pass  # fit() calls this once per epoch; begin() is the run's

    def on_train_end(self, logs=None):
        pass

    def begin(self):
        super().on_train_begin()

    def end(self):
        super().on_train_end()

    def close_logs(self):
        """On a stop: flush and close Keras' TensorBoard writers without the
        end-of-training work (the confusion matrix belongs to a finished run)."""
        for callback in self.callbacks:
            if isinstance(callback, keras.callbacks.TensorBoard):
                callback.on_train_end()

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch + self.first_step, logs)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch + self.first_step, logs)


def train(model, batches, validation, *, epochs: int, start: Position, callbacks: RunCallbacks,
          next_epoch=lambda epoch: None, finish=lambda: None) -> None:
    """Train from `start` to the end of epoch `epochs`, one fit() per epoch.

    validation: batches evaluated after every epoch (None: no validation).
    next_epoch(epoch): called before each epoch after the first this process
    trains (the first is set up before, with the backup it resumes from).
    finish(): called after the last epoch (also when a resumed run had none
    left to train), before the callbacks' end of training.
    A stop requested by a signal (training/preemption.py) leaves as an
    exception once its backup is written; the TensorBoard logs are flushed first.
    """
    callbacks.begin()
    try:
        for epoch in range(start.epoch, epochs):
            if epoch > start.epoch:
                next_epoch(epoch)
            callbacks.first_step = start.step if epoch == start.epoch else 0
            model.fit(batches.epoch(epoch, callbacks.first_step), validation_data=validation,
                      initial_epoch=epoch, epochs=epoch + 1, callbacks=callbacks, verbose=callbacks.params["verbose"],
                      shuffle=False)  # the pipeline shuffles; this only silences Keras' reminder
    except KeyboardInterrupt:  # Stopped is one: the backup is written, close the logs it wrote to
        callbacks.close_logs()
        raise
    finish()
    callbacks.end()

"""Two corrections that make Keras 3 `model.fit` work under MultiWorkerMirroredStrategy.

Upstream bug: keras-team/keras issue 20585 ("Attempt to convert a value
(PerReplica ...) to a Tensor"), open as of Keras 3.15.1. Both causes are in
keras/src/backend/tensorflow/trainer.py:

1. `_maybe_symbolic_build` takes the first distributed batch and averages it
   with `strategy.reduce("MEAN", ...)` eagerly, which a collective (multi-worker)
   strategy cannot do outside a tf.function, and which no strategy can do for
   string features (MirroredStrategy fails in AddN on apps.regression's car
   names) or sparse ones (the text bag's TF-IDF: a SparseTensor has no
   `device`, which the reduction asks for). Building needs only shapes and dtypes, so the first local replica's
   batch is enough. (The replacement also builds under the default strategy
   and only once per model: see _maybe_symbolic_build.)
2. `reduce_per_replica` averages the step's logs across workers with
   `strategy.reduce("MEAN", v, axis=0)`; the logs are scalars, and axis=0 on a
   rank-0 value fails. For scalars the right call is axis=None.

Checked against Keras 3.15.1 with TensorFlow 2.21.0 (tests/test_keras_compat.py
and the two-process test in tests/test_strategy.py). Applied by
resolve_strategy for every strategy (correction 2 only acts multi-worker); on
other Keras versions it is still applied, with a warning, as long as the
patched names exist.
"""
from __future__ import annotations

import logging

import keras
import tensorflow as tf

CHECKED_KERAS_VERSIONS = ("3.15.1",)
_applied = False


def _local_first(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]  # = strategy.experimental_local_results(value)[0]
    return value


def patch_multi_worker_fit() -> None:
    """Apply both corrections once per process (idempotent)."""
    global _applied
    if _applied:
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer
    from keras.src import tree

    if keras.__version__ not in CHECKED_KERAS_VERSIONS:
        logging.warning(
            "training.keras_compat was checked with Keras %s, this is "
            "%s: if multi-worker fit misbehaves, check keras issue 20585",
            ", ".join(CHECKED_KERAS_VERSIONS), keras.__version__,
        )

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Two changes beside correction 1. Keras defers building under the
        # default strategy to the first trace; building here under every
        # strategy means the optimizer and the metrics exist when the first
        # epoch begins, where training/backups.py loads a backup into them.
        # And once built, nothing more is built: run() calls fit() once per
        # epoch, and drawing a batch each time would cost a pass through the
        # shuffle buffer for nothing.
        if getattr(self, "_tfsuite_built", False):
            return
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(_local_first, next(it))  # correction 1
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)
        self._tfsuite_built = True

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            def _mean(v):
                rank = _local_first(v).shape.rank
                return strategy.reduce("MEAN", v, axis=0 if rank else None)  # correction 2

            return tree.map_structure(_mean, values)
        return original_reduce(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _applied = True


def build_again(model) -> None:
    """After a second compile() (a new optimizer, new metrics): let the next
    fit() build them, as the first fit() built the first ones."""
    model._tfsuite_built = False

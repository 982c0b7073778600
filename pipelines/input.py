"""The tf.data input pipelines every app feeds its model through.

Built the way the tf.data performance guide recommends, in this order:
cache (after the deterministic per-example work, before anything random) ->
shuffle (seeded) -> batch by the GLOBAL batch size -> batch-level random
augmentation with a parallel map -> prefetch(AUTOTUNE).

Training batches are a function of (--seed, epoch): TrainingBatches.epoch(e)
gives epoch e's order and augmentation whatever this process did before, which
is what lets a killed run resume at its exact step (training/resume.py).

Augmentation runs on whole batches, not single examples: on a 2-core CPU a
per-example map runs at about 9k examples/s and starves training, a batched
one at about 45k (measured in benchmarks/mnist.py --pipeline-only).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from core.errors import UsageError

AUTOTUNE = tf.data.AUTOTUNE
FULL_SHUFFLE_LIMIT = 100_000  # shuffle the whole split when it is at most this many examples


class Splits(NamedTuple):
    """What an app's load_data returns: unbatched (features, label) splits.

    info: facts learned from the TRAINING split only (normalisation statistics,
    vocabularies, class names, ...) that the model builder bakes into the model,
    so the exported model takes raw inputs. Plain Python/NumPy values, computed
    outside any strategy scope.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    source: str  # where the data came from, for the run's record
    info: dict = {}
    vectorize: Callable | None = None  # batch-level, deterministic: (raw features, labels) -> (model inputs, targets)
    # False: the splits hold row numbers whose values vectorize reads from disk (a user's table, which may
    # not fit in memory): an in-memory cache would copy only the numbers, at a cost per element.
    cache: bool = True
    files: dict = {}  # {name: bytes} the run folder keeps about the data (a user's table: which rows tested)


def pipeline_options() -> tf.data.Options:
    """Options set on every input pipeline.

    Deterministic: parallel maps keep the order, so the same seed gives the
    same batches. DATA sharding: every worker reads the whole source and keeps
    its share of each batch. FILE sharding would need at least one file per
    worker, which in-memory sources and single-file TFDS splits do not have.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return options


def evaluation_batches(ds: tf.data.Dataset, *, global_batch: int, vectorize: Callable | None = None,
                       drop_remainder: bool = False, cache: bool = True) -> tf.data.Dataset:
    """Validation or test batches: every example once, in the split's order."""
    ds = ds.with_options(pipeline_options())
    ds = ds.cache() if cache else ds
    ds = ds.batch(global_batch, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    if vectorize is not None:
        ds = ds.map(vectorize, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def epoch_key(seed: int, epoch: int) -> int:
    """The one number epoch `epoch`'s order and augmentation derive from (a positive int63)."""
    state = np.random.SeedSequence([seed % 2**32, epoch]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


class TrainingBatches:
    """The training split as batches of any epoch, from any step.

    Epoch e is shuffled with a seed derived from (--seed, e) and each batch is
    augmented with a seed derived from (that seed, its index in the epoch): the
    same command gives the same batches in any process, after any number of
    restarts. epoch(e, start=k) reads past the k batches a resumed run has
    already trained (the same shuffle, consumed and skipped before any
    augmentation or vectorizing is spent on them), not a new draw.

    vectorize(features, labels): deterministic batch-level work after the cache, e.g. a
        TextVectorization adapted on the training split (its dense TF-IDF rows
        would not fit in a cache; raw strings do).
    augment(features, labels, seed): batch-level random work; `seed` is a
        stateless-RNG seed pair unique to the batch's epoch and position.
    drop_remainder: static batch shapes (TPUs need them; large data sets use
        them so every step sees a full global batch).
    cache: False for splits of row numbers (Splits.cache).
    service: a tf.data service (grpc://HOST:PORT): each epoch is planned here (order, batches, seeds) and
        its batches vectorised and augmented by the service's workers, in the order they finish them.
    """

    def __init__(self, ds: tf.data.Dataset, *, global_batch: int, seed: int, vectorize: Callable | None = None,
                 augment: Callable | None = None, drop_remainder: bool = False, cache: bool = True,
                 service: str = ""):
        self.cached = ds.with_options(pipeline_options())
        self.cached = self.cached.cache() if cache else self.cached
        self.examples = int(self.cached.cardinality())
        self.global_batch, self.seed = global_batch, seed
        self.vectorize, self.augment, self.drop_remainder = vectorize, augment, drop_remainder
        self.service = service
        self.buffer = self.examples if 0 < self.examples <= FULL_SHUFFLE_LIMIT else 10_000
        self.steps_per_epoch = int(self.epoch(0).cardinality())  # < 0: unknown

    def epoch(self, epoch: int, start: int = 0, share: tuple[int, int] | None = None) -> tf.data.Dataset:
        """Epoch `epoch` (0-based) from its batch `start` on. share (workers, index): only that worker's
        rows of each batch (worker_rows), vectorised and augmented (WorkerShares)."""
        key = epoch_key(self.seed, epoch)
        order = self.cached.shuffle(self.buffer, seed=key, reshuffle_each_iteration=False)
        seeds = tf.data.Dataset.range(start, tf.int64.max).map(lambda i: tf.stack([tf.constant(key, tf.int64), i]))
        return self._batches(order, seeds, start, share)

    def reshuffled(self) -> tf.data.Dataset:
        """A new order on every pass: for fit(epochs=N) in one call (tuning trials, benchmarks),
        where nothing resumes mid-epoch. Seeded by --seed, so still repeatable."""
        order = self.cached.shuffle(self.buffer, seed=self.seed, reshuffle_each_iteration=True)
        seeds = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True).batch(2)
        return self._batches(order, seeds, 0)

    def _batches(self, order: tf.data.Dataset, seeds: tf.data.Dataset, start: int,
                 share: tuple[int, int] | None = None) -> tf.data.Dataset:
        ds = order.batch(self.global_batch, drop_remainder=self.drop_remainder, num_parallel_calls=AUTOTUNE)
        pairs = tf.data.Dataset.zip((ds.skip(start), seeds))
        if share is not None:
            pairs = pairs.map(lambda batch, seed: worker_rows(batch, seed, *share))
        if self.service and self.examples > 0:  # the epoch's plan here, its batches made by the service's workers
            return prepared(planned(pairs), self.vectorize, self.augment, self.service)
        return prepared(pairs, self.vectorize, self.augment)


def worker_rows(batch, seed: tf.Tensor, workers: int, index: int):
    """Worker `index`'s rows of a global batch, split into `workers` parts as evenly as its size allows (as
    tf.distribute's rebatch splits it), with a seed of their own: [key, step * workers + index]."""
    rows = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]
    begin, end = index * rows // workers, (index + 1) * rows // workers
    part = tf.nest.map_structure(lambda values: values[begin:end], batch)
    return part, tf.stack([seed[0], seed[1] * workers + index])


class WorkerShares:
    """Training batches for a MultiWorkerMirroredStrategy cluster with one replica per worker, each worker
    vectorising (reading, decoding) and augmenting only its own rows of every global batch.

    tf.distribute's DATA sharding (pipeline_options) runs the whole pipeline on every worker and keeps each
    worker's part at the end: every worker would read every file of every batch. Here the batches are made
    by distribute_datasets_from_function and cut before vectorize: the same global batches, in the same
    order, each row read by one worker. Workers with several replicas each (several GPUs) keep DATA
    sharding: a worker's dataset would then yield one element per replica, which Keras counts as steps.
    """

    def __init__(self, batches: TrainingBatches, strategy: tf.distribute.Strategy):
        self.batches, self.strategy = batches, strategy
        self.examples, self.steps_per_epoch = batches.examples, batches.steps_per_epoch

    def epoch(self, epoch: int, start: int = 0):
        def share(context: tf.distribute.InputContext) -> tf.data.Dataset:
            return self.batches.epoch(epoch, start, share=(context.num_input_pipelines, context.input_pipeline_id))

        return self.strategy.distribute_datasets_from_function(share)

    def reshuffled(self) -> tf.data.Dataset:
        return self.batches.reshuffled()


def planned(pairs: tf.data.Dataset) -> tf.data.Dataset:
    """An epoch's (batch of split elements, seed) pairs, worked out here and held as tensors: a source the
    tf.data service can hand out batch by batch (a shuffle cannot be split across its workers)."""
    plan = list(pairs)
    if not plan:
        return pairs
    batches, seeds = zip(*plan)
    stacked = tf.nest.map_structure(lambda *parts: tf.ragged.stack(parts), *batches)
    return tf.data.Dataset.from_tensor_slices((stacked, tf.stack(seeds)))


def prepared(pairs: tf.data.Dataset, vectorize: Callable | None, augment: Callable | None,
             service: str = "") -> tf.data.Dataset:
    """(batch, stateless seed pair) -> the batch vectorised, then augmented with its own seed, prefetched:
    the work every training batch gets, shuffled (TrainingBatches) or Poisson-sampled (PoissonBatches).
    service: a tf.data service (grpc://HOST:PORT) whose workers do that work, each batch once, handed out
    as they finish (pipelines/data_service.py)."""
    if vectorize is not None:
        pairs = pairs.map(lambda batch, seed: (vectorize(*batch), seed), num_parallel_calls=AUTOTUNE)
    if augment is not None:
        pairs = pairs.map(lambda batch, seed: (augment(*batch, seed), seed), num_parallel_calls=AUTOTUNE)
    batches = pairs.map(lambda batch, seed: batch)
    if service:
        count = int(batches.cardinality())  # the plan's: the service's dataset does not know it
        batches = batches.apply(tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=service))
        batches = batches.apply(tf.data.experimental.assert_cardinality(count)) if count >= 0 else batches
    return batches.prefetch(AUTOTUNE)


class PoissonBatches:
    """The training split as Poisson-sampled batches: what --dp trains on (training/privacy.py).

    Every step takes each training example independently with probability
    q = expected_batch / N, so a batch's size varies around expected_batch
    (about +-3 sqrt(expected_batch)). That is the sampling DP-SGD's accountants
    assume; a shuffled epoch cut into fixed batches is not, and its privacy can
    be much worse than they report (Chua et al. 2024). An "epoch" is
    round(N / expected_batch) steps: each example is seen once on average.

    The draws come from `secret`, a number read from the operating system in
    each process, never from --seed: whoever knows which examples a step took
    knows more than the accountant allows for. So a DP run's batches are not
    repeatable, and a resumed run draws fresh ones (the steps it replays were
    never part of a saved model). The split is held in memory as tensors:
    every step gathers its examples from them.
    """

    def __init__(self, ds: tf.data.Dataset, *, expected_batch: int, secret: int, vectorize: Callable | None = None,
                 augment: Callable | None = None):
        self.examples = int(ds.cardinality())
        if self.examples <= 0:
            raise UsageError("--dp samples each step from the whole training split, which needs a split of known size")
        self.data = next(iter(ds.with_options(pipeline_options()).batch(self.examples)))
        self.expected_batch, self.secret = expected_batch, secret
        self.sampling_rate = min(1.0, expected_batch / self.examples)
        self.steps_per_epoch = max(1, round(self.examples / expected_batch))
        self.vectorize, self.augment = vectorize, augment

    def epoch(self, epoch: int, start: int = 0) -> tf.data.Dataset:
        """Epoch `epoch`'s steps from step `start` on, each a fresh Poisson draw."""
        state = np.random.SeedSequence([self.secret, epoch]).generate_state(2, np.uint32)  # all of the secret's bits
        key = int(state[0]) << 31 | int(state[1]) >> 1
        seeds = tf.data.Dataset.range(start, self.steps_per_epoch).map(
            lambda i: tf.stack([tf.constant(key, tf.int64), i]))
        return self._batches(seeds)

    def reshuffled(self) -> tf.data.Dataset:
        """For fit(epochs=N) in one call (tuning trials): new draws on every pass."""
        seeds = tf.data.Dataset.random(seed=self.secret % 2**63, rerandomize_each_iteration=True).batch(2)
        return self._batches(seeds.take(self.steps_per_epoch))

    def _batches(self, seeds: tf.data.Dataset) -> tf.data.Dataset:
        def draw(seed):
            taken = tf.random.stateless_uniform([self.examples], seed=seed) < self.sampling_rate
            chosen = tf.where(taken)[:, 0]
            return tf.nest.map_structure(lambda values: tf.gather(values, chosen), self.data)

        pairs = seeds.map(lambda seed: (draw(seed), seed), num_parallel_calls=AUTOTUNE)
        return prepared(pairs.with_options(pipeline_options()), self.vectorize, self.augment)


def random_shift(images: tf.Tensor, max_shift: int, seed: tf.Tensor) -> tf.Tensor:
    """Shift each image of a [B, H, W, C] batch by up to max_shift pixels, zero-filled.

    Pads once and gathers one random HxW window per image: a batch at a time,
    no per-example map.
    """
    batch = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]])
    offsets = tf.random.stateless_uniform([batch, 2], seed=seed, minval=0, maxval=2 * max_shift + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None]  # (B, H)
    cols = offsets[:, 1:] + tf.range(width)[None]  # (B, W)
    shifted = tf.gather(padded, rows, batch_dims=1)  # (B, H, W+2s, C)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)  # (B, H, W, C)


def labelled_subset(ds: tf.data.Dataset, n: int, seed: int) -> tf.data.Dataset:
    """n examples of ds drawn at random by `seed`, in ds's order: a training split with fewer labels.

    Not stratified: with few labels some classes get more than others, as a
    random sample of labelled data would.
    """
    count = int(ds.cardinality())
    if count < 0:
        raise UsageError("--train-examples needs a training split of known size")
    if n > count:
        raise UsageError(f"--train-examples {n} is more than the {count} training examples")
    keep = np.zeros(count, bool)
    keep[np.random.default_rng(seed).choice(count, n, replace=False)] = True
    keep = tf.constant(keep)

    def kept(index, example):
        return keep[index]

    def without_index(index, example):
        return example

    return ds.enumerate().filter(kept).map(without_index).apply(tf.data.experimental.assert_cardinality(n))

"""The tf.data input pipeline every app feeds its model through.

Built the way the tf.data performance guide recommends, in this order:
cache (after the deterministic per-example work, before anything random) ->
shuffle (seeded) -> batch by the GLOBAL batch size -> batch-level random
augmentation with a parallel map -> prefetch(AUTOTUNE).

Augmentation runs on whole batches, not single examples: on a 2-core CPU a
per-example map runs at about 9k examples/s and starves training, a batched
one at about 45k (measured in benchmarks/mnist.py --pipeline-only).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import tensorflow as tf

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


def pipeline_options(seed: int | None, shard_policy=tf.data.experimental.AutoShardPolicy.DATA) -> tf.data.Options:
    """Options set on every input pipeline.

    DATA sharding: every worker reads the whole source and keeps its share of
    each batch. FILE sharding would need at least one file per worker, which
    in-memory sources and single-file TFDS splits do not have.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = shard_policy
    options.deterministic = seed is not None
    return options


def make_pipeline(
    ds: tf.data.Dataset,
    *,
    global_batch: int,
    training: bool,
    seed: int | None,
    preprocess: Callable | None = None,
    vectorize: Callable | None = None,
    augment: Callable | None = None,
    drop_remainder: bool = False,
    cache: bool = True,
) -> tf.data.Dataset:
    """Batches of (features, labels) ready for model.fit / evaluate.

    ds: unbatched (features, label) examples.
    preprocess(features, label): deterministic per-example work, cached.
    vectorize(features, labels): deterministic batch-level work after the cache, e.g. a
        TextVectorization adapted on the training split (its dense TF-IDF rows
        would not fit in a cache; raw strings do).
    augment(features, labels, seed): batch-level random work, training only;
        `seed` is a stateless-RNG seed pair that differs per batch and per epoch.
    drop_remainder: static batch shapes (TPUs need them; training uses them so
        every step sees a full global batch).
    """
    ds = ds.with_options(pipeline_options(seed))
    if preprocess is not None:
        ds = ds.map(preprocess, num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        size = int(ds.cardinality())
        buffer = size if 0 < size <= FULL_SHUFFLE_LIMIT else 10_000
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(global_batch, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    if vectorize is not None:
        ds = ds.map(vectorize, num_parallel_calls=AUTOTUNE)
    if training and augment is not None:
        # One stateless seed pair per batch, re-drawn each epoch, derived from --seed.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: augment(batch[0], batch[1], s), num_parallel_calls=AUTOTUNE
        )
    return ds.prefetch(AUTOTUNE)


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

"""The bag model's TF-IDF as sparse tensors: a text's few hundred n-grams, not its whole vocabulary.

A batch of 128 texts over 50,000 n-grams is 25 MB of floats when dense, and
oneDNN's CPU allocator keeps the largest such tensors it ever held for the rest
of the process (docs/platform-notes.md): the dense bag made a 108 MB user file
peak near 2 GB. As a tf.SparseTensor the same batch is the n-grams present:
128 fortunes have about 300 each, 0.8 MB of indices and values, and the first
Dense layer multiplies only those.

    encoder = SparseTfIdf.like(vectorizer)   # after the dense TextVectorization is adapted
    encoder(texts) -> tf.SparseTensor [batch, vocabulary]: the same values as vectorizer(texts)

The layers between the inputs and the first Dense (TfIdfNormalization,
VocabularyDropout) take a SparseTensor or a dense tensor and compute the same:
a SavedModel feeds them sparse batches, the LiteRT file (TFLite has no sparse
inputs) dense ones from preprocessing.json's recipe, and DP-SGD dense ones
(its per-example gradients slice the batch, which a SparseTensor cannot).
Sparse ops have no XLA kernels, so the bag model trains without XLA
(training/strategy.py: xla_status says so under --xla on).
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

PACKAGE = "apps.text"


def _scaled(x, factors, axis: int):
    """x times factors[i] along `axis` (0: per row, 1: per column), for a dense or a sparse x."""
    if isinstance(x, tf.SparseTensor):
        scaled = x.values * tf.gather(tf.cast(factors, x.values.dtype), x.indices[:, axis])
        return tf.SparseTensor(x.indices, scaled, x.dense_shape)
    return x * tf.expand_dims(tf.cast(factors, x.dtype), 1 - axis)


class _SparseOrDense(layers.Layer):
    """A layer that takes a SparseTensor or a dense tensor of one shape and returns the same kind."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_jit = False  # a SparseTensor's ops have no XLA kernels

    def compute_output_spec(self, x, training=None):
        return keras.KerasTensor(x.shape, dtype=self.compute_dtype, sparse=getattr(x, "sparse", False))


@keras.saving.register_keras_serializable(package=PACKAGE)
class TfIdfNormalization(_SparseOrDense):
    """Each text's TF-IDF vector divided by its L2 norm, as scikit-learn's TfidfVectorizer does (in float32:
    a text's squared values summed would overflow float16)."""

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, "dtype": "float32"})

    def call(self, x):
        squares = tf.sparse.reduce_sum(tf.square(x), axis=1) if isinstance(x, tf.SparseTensor) \
            else tf.reduce_sum(tf.square(x), axis=1)
        return _scaled(x, tf.math.rsqrt(tf.maximum(squares, 1e-12)), axis=0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VocabularyDropout(_SparseOrDense):
    """Dropout of whole vocabulary columns: one mask over the n-grams per batch, shared by its texts.

    One mask per text would draw batch x vocabulary random numbers, which was half of a step on a CPU
    (102 -> 40 ms at batch 128 and 50,000 inputs) and did not change the test accuracy.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)  # its state is a variable: backups resume it

    def call(self, x, training=None):
        if not training or self.rate == 0:
            return x
        # The width from the tensor: a sparse concatenation's static shape is unknown.
        width = x.dense_shape[-1] if isinstance(x, tf.SparseTensor) else tf.shape(x, out_type=tf.int64)[-1]
        keep = keras.random.uniform(tf.reshape(width, [1]), seed=self.seed_generator) >= self.rate
        return _scaled(x, tf.cast(keep, tf.float32) / (1.0 - self.rate), axis=1)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class SparseTfIdf(layers.Layer):
    """Texts -> their TF-IDF as a tf.SparseTensor, with a fitted TextVectorization's vocabulary and IDF weights.

    Keras' TextVectorization(output_mode="tf_idf", sparse=True) fails in Keras 3.15 (it multiplies the sparse
    counts by the dense IDF vector, which its TensorFlow backend cannot); here the counts come sparse from a
    twin in "count" mode and are weighted one value at a time.
    """

    def __init__(self, counts: layers.TextVectorization, idf, **kwargs):
        super().__init__(**kwargs)
        self.counts = counts
        self.idf = tf.constant(idf, tf.float32)

    @classmethod
    def like(cls, vectorizer: layers.TextVectorization) -> SparseTfIdf:
        config = vectorizer.get_config()
        counts = layers.TextVectorization(
            max_tokens=config["max_tokens"], standardize=config["standardize"], split=config["split"],
            ngrams=config["ngrams"], output_mode="count", sparse=True, name=f"{vectorizer.name}_counts")
        counts.set_vocabulary(vectorizer.get_vocabulary())
        return cls(counts, vectorizer._lookup_layer.idf_weights, name=f"{vectorizer.name}_sparse")

    def vocabulary_size(self) -> int:
        return self.counts.vocabulary_size()

    def call(self, texts):
        counts = self.counts(texts)
        return _scaled(tf.SparseTensor(counts.indices, tf.cast(counts.values, tf.float32), counts.dense_shape),
                       self.idf, axis=1)

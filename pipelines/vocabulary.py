"""A TextVectorization's vocabulary and TF-IDF document counts, counted in one streaming pass: fast, and in
bounded memory on text of any size.

    counted = vocabulary.adapt(vectorizer, batches_of_texts, progress=print)   # instead of vectorizer.adapt

Keras' own adapt dedupes each document's tokens with a tf.unique per row (a
map_fn) and keeps every distinct token in two hash tables until the end: on
the 62,630 training fortunes, the word 1-3 grams took 31 s and 480 MB. Here
the layer tokenises each batch itself (so the tokens are exactly those it
will look up), a batch is counted with two vectorised uniques (tokens;
(document, token) pairs), and the counts are added into the layer's own hash
tables. When they hold more than CAP distinct tokens, the rarer half is
dropped (a token kept can then be short by at most the counts dropped,
which is printed); the vocabulary is the top max_tokens, far above
that on real text. The layer's own finalize_state then makes the vocabulary:
its tokens, their order (count, then token, both descending) and the IDF
weights are Keras' own, equal to adapt()'s wherever nothing was dropped
(tests/test_vocabulary.py).
"""
from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

CAP = 1_000_000  # distinct tokens held while counting (in two hash tables for TF-IDF): past it the rarer half goes


def _counted(tokens: tf.RaggedTensor):
    """A batch's distinct tokens, how often each occurs, in how many of its documents, and how many documents
    it holds: in the graph, so tf.data counts batches in parallel with the tables taking the last ones."""
    tokens = tokens.merge_dims(1, -1) if tokens.ragged_rank > 1 else tokens
    distinct, index = tf.unique(tokens.flat_values, out_idx=tf.int64)
    size = tf.size(distinct, out_type=tf.int64)
    occurrences = tf.math.unsorted_segment_sum(tf.ones_like(index), index, size)
    pairs, _ = tf.unique(tokens.value_rowids() * size + index, out_idx=tf.int64)  # each token once per document
    in_documents = tf.math.unsorted_segment_sum(tf.ones_like(pairs), pairs % size, size)
    return distinct, occurrences, in_documents, tokens.nrows()


def adapt(vectorizer, batches, cap: int = CAP, progress=None) -> dict:
    """Adapt `vectorizer` (a TextVectorization) on `batches` (a dataset of 1-D string batches). Returns what
    was counted: {"documents", "distinct", "short_by"} (0 when nothing was dropped)."""
    lookup = vectorizer._lookup_layer  # Keras' IndexLookup: its own tables take the counts
    tables = [lookup.token_counts] + ([lookup.token_document_counts] if lookup.output_mode == "tf_idf" else [])
    lookup.reset_state()
    documents, short_by = 0, 0  # short_by: how much a kept token's count can be short (the counts dropped)
    started = shown = time.time()
    if not isinstance(vectorizer._preprocess(tf.constant(["a b"])), tf.RaggedTensor):  # a dense split: Keras'
        vectorizer.adapt(batches)
        return {"documents": -1, "distinct": -1, "short_by": 0}
    counted = batches.map(lambda texts: _counted(vectorizer._preprocess(texts)), num_parallel_calls=tf.data.AUTOTUNE)
    for distinct, occurrences, in_documents, rows in counted.prefetch(2):
        for table, counts in zip(tables, (occurrences, in_documents)):
            table.insert(distinct, counts + table.lookup(distinct))
        documents += int(rows)
        if int(lookup.token_counts.size()) > cap:
            short_by += _drop_rarer_half(tables)
        if progress and time.time() - shown > 10:
            shown = time.time()
            progress(f"  counting {vectorizer.name}'s vocabulary: {documents:,} texts, "
                     f"{int(lookup.token_counts.size()):,} distinct tokens, {documents / (shown - started):,.0f} "
                     "texts/s", flush=True)
    distinct = int(lookup.token_counts.size())
    if lookup.output_mode == "tf_idf":
        lookup.num_documents.assign(documents)
    vectorizer.finalize_state()  # Keras' own: the vocabulary, its order, the IDF weights; the tables emptied
    if progress and short_by:
        progress(f"  {vectorizer.name}: more than {cap:,} distinct tokens while counting; the rarer were dropped, "
                 f"so a count can be short by at most {short_by:,}", flush=True)
    return {"documents": documents, "distinct": distinct, "short_by": short_by}


def _drop_rarer_half(tables: list) -> int:
    """Drop the tokens seen least (at least half of them) from every table; the largest count dropped."""
    keys, occurrences = (t.numpy() for t in tables[0].export())
    cut = int(np.partition(occurrences, len(occurrences) // 2)[len(occurrences) // 2])
    rare = tf.constant(keys[occurrences <= cut])
    for table in tables:
        table.remove(rare)
    return cut

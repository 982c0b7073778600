"""A TextVectorization's vocabulary and TF-IDF document counts, counted in one streaming pass: fast, and in
bounded memory on text of any size.

    counted = vocabulary.adapt(vectorizer, batches_of_texts, progress=print)   # instead of vectorizer.adapt

Keras' own adapt dedupes each document's tokens with a tf.unique per row (a
map_fn) and keeps every distinct token in two hash tables until the end. Here
the layer tokenises each small batch itself (so the tokens are exactly those
it will look up), tf.data counts batches in parallel with two vectorised
uniques (tokens; (document, token) pairs), and the counts go into two hash
tables of this pass's own. When they hold more than CAP distinct tokens, the
rarer half is dropped (a token kept can then be short by at most the counts
dropped, which the run prints; the vocabulary is the top max_tokens, counted
far more often on real text). At the end only the tokens that can make the
vocabulary go into the layer's tables, and the layer's own finalize_state
chooses: its tokens, their order (count, then token, both descending) and the
IDF weights are Keras' own, equal to adapt()'s wherever nothing was dropped
(tests/test_vocabulary.py). The text classifier's word 1-3 grams and
character n-grams of 62,630 fortunes in seven languages: Keras' adapt 76 s
and +580 MB of RSS in the app's run; here 24 s and +240 MB on their own.
"""
from __future__ import annotations

import time

import tensorflow as tf

# Texts tokenised at a time: tf.data works on a few batches at once, and a text's character n-grams are
# many (the fortunes' vocabularies, held at a million tokens: +390 MB of RSS in batches of 64, +930 MB in 1,024)
BATCH = 64
CAP = 500_000  # distinct tokens held while counting (two hash tables for TF-IDF): past it the rarer half goes


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
    if not isinstance(vectorizer._preprocess(tf.constant(["a b"])), tf.RaggedTensor):  # a dense split: Keras'
        vectorizer.adapt(batches)
        return {"documents": -1, "distinct": -1, "short_by": 0}
    lookup = vectorizer._lookup_layer  # Keras' IndexLookup: its own tables take the candidates at the end
    tfidf = lookup.output_mode == "tf_idf"
    # Tables of this pass's own, freed when it ends: a hash table keeps its size after its keys are removed
    tables = [tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, 0) for _ in range(1 + tfidf)]
    documents, short_by = 0, 0  # short_by: how much a kept token's count can be short (the counts dropped)
    started = shown = time.time()
    counted = batches.unbatch().batch(BATCH).map(lambda texts: _counted(vectorizer._preprocess(texts)),
                                                 num_parallel_calls=tf.data.AUTOTUNE)
    for distinct, occurrences, in_documents, rows in counted.prefetch(1):
        for table, counts in zip(tables, (occurrences, in_documents)):
            table.insert(distinct, counts + table.lookup(distinct))
        documents += int(rows)
        if int(tables[0].size()) > cap:
            short_by += _drop_rarer_half(tables)
        if progress and time.time() - shown > 10:
            shown = time.time()
            progress(f"  counting {vectorizer.name}'s vocabulary: {documents:,} texts, {int(tables[0].size()):,} "
                     f"distinct tokens, {documents / (shown - started):,.0f} texts/s", flush=True)
    distinct = int(tables[0].size())
    keys, occurrences = _candidates(tables[0], lookup.max_tokens)
    lookup.reset_state()
    lookup.token_counts.insert(keys, occurrences)
    if tfidf:
        lookup.token_document_counts.insert(keys, tables[1].lookup(keys))
        lookup.num_documents.assign(documents)
    del tables
    vectorizer.finalize_state()  # Keras' own: the vocabulary, its order, the IDF weights
    if progress and short_by:
        progress(f"  {vectorizer.name}: more than {cap:,} distinct tokens while counting; the rarer were dropped, "
                 f"so a count can be short by at most {short_by:,}", flush=True)
    return {"documents": documents, "distinct": distinct, "short_by": short_by}


SPARE = 8  # candidates past max_tokens: the special tokens finalize_state takes out of the counts first


def _candidates(table, max_tokens: int | None):
    """The tokens finalize_state can choose: every token counted at least as often as the max_tokens-th most
    counted (ties included: it breaks them by the token), or all of them without max_tokens."""
    keys, counts = table.export()
    if max_tokens and int(tf.size(counts)) > max_tokens + SPARE:
        least = tf.math.top_k(counts, k=max_tokens + SPARE, sorted=True).values[-1]
        chosen = counts >= least
        keys, counts = tf.boolean_mask(keys, chosen), tf.boolean_mask(counts, chosen)
    return keys, counts


def _drop_rarer_half(tables: list) -> int:
    """Drop the tokens seen least (at least half of them) from every table; the largest count dropped."""
    keys, counts = tables[0].export()
    cut = tf.sort(counts)[tf.size(counts) // 2]
    rare = tf.boolean_mask(keys, counts <= cut)
    for table in tables:
        table.remove(rare)
    return int(cut)

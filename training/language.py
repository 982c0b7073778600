"""Evaluation and generation for apps.text: macro-F1, perplexity against a bigram
model, and sampling a continuation from an exported language model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.config import UsageError
from training.export import existing_versions

BIGRAM_SMOOTHING = (0.001, 0.01, 0.1, 1.0)  # add-k values; the best on validation is used on test


def macro_f1(model, splits) -> float:
    """Macro-averaged F1 on the test split (the mean of per-class F1: minority classes count fully)."""
    test = splits.test.batch(512).map(splits.vectorize)
    labels = np.concatenate([y for _, y in test.as_numpy_iterator()])
    predicted = model.predict(test, verbose=0).argmax(-1)
    scores = []
    for c in range(len(splits.info["class_names"])):
        tp = np.sum((predicted == c) & (labels == c))
        precision = tp / max(np.sum(predicted == c), 1)
        recall = tp / max(np.sum(labels == c), 1)
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))


def _pairs(dataset, vectorize):
    """(context ids, next ids) arrays of every real (non-padding) position."""
    xs, ys = [], []
    for x, y in dataset.batch(512).map(vectorize).as_numpy_iterator():
        keep = y != 0
        xs.append(x[keep])
        ys.append(y[keep])
    return np.concatenate(xs), np.concatenate(ys)


def bigram_log_probs(train_pairs, pairs, vocabulary: int, k: float) -> np.ndarray:
    """log P(next | previous) under an add-k smoothed bigram model counted on the training pairs."""
    counts = np.zeros((vocabulary, vocabulary), np.float64)
    np.add.at(counts, train_pairs, 1)
    probabilities = (counts + k) / (counts.sum(1, keepdims=True) + k * vocabulary)
    return np.log(probabilities[pairs[0], pairs[1]])


def perplexities(model, splits) -> dict:
    """Test perplexity per character of the model and of the best add-k bigram model, same pairs."""
    vocabulary = splits.info["vectorizer"].vocabulary_size()
    train, validation, test = (_pairs(ds, splits.vectorize) for ds in (splits.train, splits.validation, splits.test))
    k = max(BIGRAM_SMOOTHING, key=lambda k: bigram_log_probs(train, validation, vocabulary, k).mean())
    bigram = float(np.exp(-bigram_log_probs(train, test, vocabulary, k).mean()))
    total, count = 0.0, 0
    for x, y in splits.test.batch(256).map(splits.vectorize).as_numpy_iterator():
        probabilities = np.asarray(model(x, training=False))  # not predict(): see summaries.Continuations
        keep = y != 0
        picked = np.take_along_axis(probabilities, y[..., None], axis=-1)[..., 0][keep]
        total += float(np.log(np.maximum(picked, 1e-12)).sum())
        count += int(keep.sum())
    return {"test_perplexity": float(np.exp(-total / max(count, 1))), "bigram_test_perplexity": bigram,
            "bigram_add_k": k, "test_characters": count}


def generate(config, boundary: str) -> str:
    """Continue --generate's prompt with the newest exported language model, sampling at --temperature."""
    options = config.options
    base = Path(config.export_dir) / "text_lm"
    versions = existing_versions(base)
    if not versions:
        raise UsageError(f"no exported language model under {base}; train one first: python -m apps.text --task lm")
    export = base / str(versions[-1])
    signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    vocabulary = json.loads((export / "vocabulary.json").read_text())
    prompt = options["generate"]
    characters = sorted(set(prompt))
    unknown = signature(text=tf.constant(characters))["unknown_characters"].numpy()
    if unknown.any():
        bad = "".join(c for c, n in zip(characters, unknown) if n)
        raise UsageError(f"the prompt has characters the model never saw in training: {bad!r}; leave them out")
    rng = np.random.default_rng(config.seed)
    text = prompt
    for _ in range(options["length"]):
        out = signature(text=tf.constant([text]))
        probabilities = out["probabilities"].numpy()[0].astype(np.float64)
        logits = np.log(np.maximum(probabilities, 1e-12)) / options["temperature"]
        logits[:2] = -np.inf  # never padding or [UNK]
        weights = np.exp(logits - logits.max())
        choice = rng.choice(len(weights), p=weights / weights.sum())
        token = vocabulary[choice]
        if token == boundary:
            break
        text += token
    return text

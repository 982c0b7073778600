"""What the character language model (apps.charlm) does with text beyond training:
perplexity against a bigram model, greedy continuations and the characters
behind each prediction in TensorBoard, sampling a continuation from an exported
model (--generate), and explaining a prompt's next character (--explain).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.characters import BOUNDARY, VOCABULARY_FILE
from core.errors import UsageError
from observation import explain, figures
from observation.callbacks import Pictures
from deployment.export import existing_versions

BIGRAM_SMOOTHING = (0.001, 0.01, 0.1, 1.0)  # add-k values; the best on validation is used on test


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
        probabilities = np.asarray(model(x, training=False))  # not predict(): see pictures()
        keep = y != 0
        picked = np.take_along_axis(probabilities, y[..., None], axis=-1)[..., 0][keep]
        total += float(np.log(np.maximum(picked, 1e-12)).sum())
        count += int(keep.sum())
    return {"test_perplexity": float(np.exp(-total / max(count, 1))), "bigram_test_perplexity": bigram,
            "bigram_add_k": k, "test_characters": count}


def generate(config) -> str:
    """Continue --generate's prompt with the newest exported language model, sampling at --temperature."""
    options = config.options
    base = Path(config.export_dir) / "charlm"
    versions = existing_versions(base)
    if not versions:
        raise UsageError(f"no exported language model under {base}; train one first: python -m apps.charlm")
    export = base / str(versions[-1])
    signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    vocabulary = json.loads((export / VOCABULARY_FILE).read_text())
    prompt = options["generate"]
    characters = list(dict.fromkeys(prompt))  # each once, in the prompt's order (as the error lists them)
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
        if token == BOUNDARY:
            break
        text += token
    return text


def continue_greedily(prompt: str, vocabulary: list, next_probabilities, length: int = 80) -> str:
    """The likeliest continuation of prompt, a character at a time, up to the closing boundary."""
    index = {token: i for i, token in enumerate(vocabulary)}
    ids = [index.get(c, 1) for c in BOUNDARY + prompt]
    out = ""
    for _ in range(length):
        probabilities = np.array(next_probabilities(tf.constant([ids], tf.int64))[0])
        probabilities[:2] = 0  # never padding or [UNK]
        token = vocabulary[int(probabilities.argmax())]
        if token == BOUNDARY:
            break
        out += token
        ids.append(index[token])
    return out


def prompt_attributions(model, prompt: str, vocabulary: list) -> tuple[str, float, list[str], np.ndarray]:
    """(the likeliest next character, its probability, the prompt's characters with the opening
    boundary first, each one's integrated-gradients share in that prediction)."""
    index = {token: i for i, token in enumerate(vocabulary)}
    ids = np.array([index.get(c, 1) for c in BOUNDARY + prompt], np.int64)
    probabilities = np.array(model(ids[None], training=False)[0, -1])
    probabilities[:2] = 0  # never padding or [UNK]
    target, last = int(probabilities.argmax()), len(ids) - 1
    scores = explain.embedding_attributions(model, ids, lambda out: out[:, last, target])
    return vocabulary[target], float(probabilities[target]), list(BOUNDARY + prompt), scores


def _shown(character: str) -> str:
    return {BOUNDARY: "⏎", " ": "␣"}.get(character, character)


def attribution_markdown(rows) -> str:
    lines = ["The prompt's characters that drive the predicted next character most, with their integrated-gradients "
             "share (⏎ marks the start of the text):"]
    for prompt, (token, p, chars, scores) in rows:
        strongest = sorted(range(len(chars)), key=lambda k: -abs(scores[k]))[:5]
        listed = ", ".join(f"`{_shown(chars[k])}` at {k} {scores[k]:+.3f}" for k in sorted(strongest))
        lines.append(f"- `{prompt}` → next `{_shown(token)}` ({p:.2f}): {listed}")
    return "\n".join(lines)


def attribution_figure(rows, title: str):
    lines = [([_shown(c) for c in chars], scores, f"{prompt!r} -> next {_shown(token)!r} ({p:.2f})")
             for prompt, (token, p, chars, scores) in rows]
    return figures.highlighted_text(lines,
                                    f"{title}: characters for the predicted next one in green, against it in red")


def pictures(logdir, prompts: list[str], vectorizer) -> list:
    """Every epoch: greedy continuations of a few test prompts, and which characters drive each next one."""
    vocabulary = vectorizer.get_vocabulary()

    def epoch_end(model, when):
        # A direct call, not predict(): predict would split this one prompt across
        # replicas, and Keras' LSTM fails on the empty share of the second one. In
        # a tf.function traced once for every length: called eagerly, the LSTM
        # took 0.16 s a character here, 33x the traced call.
        next_probabilities = tf.function(lambda ids: model(ids, training=False)[:, -1],
                                         input_signature=[tf.TensorSpec([1, None], tf.int64)])
        rows = ["| prompt | continuation (greedy) |", "|---|---|"]
        rows += [f"| {p} | {continue_greedily(p, vocabulary, next_probabilities)} |".replace("\n", " ")
                 for p in prompts]
        explained = [(p, prompt_attributions(model, p, vocabulary)) for p in prompts]
        return {"sample_continuations": "\n".join(rows), "explanations/text": attribution_markdown(explained),
                "explanations/image": attribution_figure(explained, f"Test prompts, {when}")}

    return [Pictures(logdir, epoch_end=epoch_end)]


def explain_prompt(model, prompt: str, version: Path) -> explain.Explanation:
    """--explain PROMPT: the likeliest next character and the prompt's characters behind it."""
    if not prompt.strip():
        raise UsageError("--explain needs a non-empty prompt")
    vocabulary = json.loads((version / VOCABULARY_FILE).read_text())
    unknown = list(dict.fromkeys(c for c in prompt if c not in vocabulary))  # in the prompt's order
    if unknown:
        raise UsageError("the prompt has characters the model never saw "
                         f"in training: {''.join(unknown)!r}; leave them out")
    token, p, chars, scores = prompt_attributions(model, prompt, vocabulary)
    strongest = sorted(range(len(chars)), key=lambda k: -abs(scores[k]))[:5]
    lines = ["the characters behind it (integrated gradients; position 0 is the start of the text):"]
    lines += [f"{_shown(chars[k])!r:>6} at {k:<3} {scores[k]:+.3f}" for k in strongest]
    figure = attribution_figure([(prompt, (token, p, chars, scores))], "Your prompt")
    return explain.Explanation(f"next character {_shown(token)!r} (probability {p:.3f})", figure, lines)


def next_character_test(texts: np.ndarray, vocabulary: list, window: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    """What the export's perplexity is measured on: each test text cut at a seeded random
    point into a prompt (at most window - 1 characters: the LiteRT file's window holds the
    opening boundary too) and the character that follows it (the closing boundary at the end)."""
    rng = np.random.default_rng(seed)
    index = {c: i for i, c in enumerate(vocabulary)}
    prompts, targets = [], []
    for raw in texts.tolist():
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        cut = int(rng.integers(0, min(len(text), window - 1) + 1))
        prompts.append(text[:cut].encode("utf-8"))
        targets.append(index.get(text[cut] if cut < len(text) else BOUNDARY, 1))  # 1: [UNK]
    return {"text": np.array(prompts, dtype=object)}, np.array(targets, np.int64)

"""The sentiment app's pictures and explanations: which words a prediction rests on.

The n-gram bag has no gradient to a word (TF-IDF counts n-grams), so a word's
share is how much the predicted class's probability drops when the word is
left out (occlusion). The sequence models (cnn on word ids, lstm on character
ids) get integrated gradients on their embedding vectors; the lstm's
character attributions are summed per word. Shown as highlighted text: in
TensorBoard's Text tab (markdown: bold for, italics against, with the
strongest words listed) and as a picture.
"""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from apps import characters
from core.errors import UsageError
from observation import explain, figures
from observation.callbacks import Pictures, confusion_matrix

WORD_VOCABULARY_FILE = "word_vocabulary.json"  # the cnn's word ids, beside its export (--explain reads it)
LABELS_FILE = "labels.json"  # the class names in the model's order, beside every export
SHOWN = 8  # test texts explained each epoch


def word_scores(text: str, units: list[str], scores: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per-unit scores (characters of the text, in order) summed per space-separated word."""
    words = text.split(" ")
    tokens = [w + " " for w in words[:-1]] + words[-1:]
    totals, at = [], 0
    for token in tokens:
        totals.append(float(np.sum(scores[at:at + len(token)])))
        at += len(token)
    return tokens, np.array(totals)


class Explainer:
    """Texts -> (probabilities, per-word attributions of the predicted class), for one trained model.

    kind: bag (occlusion through predict), cnn or lstm (integrated gradients on the embedding).
    predict(texts) -> probabilities; encode(texts) -> the model's inputs.
    """

    def __init__(self, kind: str, model, predict, encode=None, vocabulary=None):
        self.kind, self.model, self.predict, self.encode, self.vocabulary = kind, model, predict, encode, vocabulary

    def __call__(self, texts: list[str]):
        probabilities = np.asarray(self.predict(texts))
        rows = []
        for text, p in zip(texts, probabilities):
            target = int(p.argmax())
            if self.kind == "bag":
                rows.append(explain.word_occlusion(self.predict, text, target))
                continue
            ids = np.asarray(next(iter(self.encode(tf.constant([text])).values())))[0]
            scores = explain.embedding_attributions(self.model, ids, lambda out, t=target: out[:, t])
            if self.kind == "lstm":  # ids: the opening boundary, one per character, the closing one, padding
                rows.append(word_scores(text, list(text), scores[1:1 + len(text)]))
            else:  # cnn: one id per standardised word; show the vocabulary's word ([UNK] where unknown)
                count = int(np.count_nonzero(ids))
                rows.append(([self.vocabulary[i] + " " for i in ids[:count]], scores[:count]))
        return probabilities, rows


def markdown(texts, probabilities, rows, class_names, labels=None) -> str:
    """A numbered list: the prediction, the text with words for it in bold and against it in italics,
    and its strongest words with their scores."""
    lines = []
    for i, (_, p, (tokens, scores)) in enumerate(zip(texts, probabilities, rows)):
        c = int(p.argmax())
        wrong = "" if labels is None or labels[i] == c else " **(wrong)**"
        verdict = "" if labels is None else f", true {class_names[labels[i]]}{wrong}"
        limit = max(np.abs(scores).max(), 1e-12)
        marked = "".join(_mark(t, s / limit) for t, s in zip(tokens, scores))
        strongest = sorted(range(len(tokens)), key=lambda k: -abs(scores[k]))[:4]
        listed = ", ".join(f"`{tokens[k].strip()}` {scores[k]:+.3f}" for k in strongest)
        lines.append(f"{i + 1}. predicted **{class_names[c]}** "
                     f"({p[c]:.2f}){verdict}<br>{marked}<br>strongest: {listed}")
    legend = "Words **for** the predicted class in bold, _against_ it in italics (the strongest quarter of each text)."
    return legend + "\n\n" + "\n".join(lines)


def _mark(token: str, share: float) -> str:
    word, space = token.rstrip(" "), token[len(token.rstrip(" ")):]
    word = word.replace("*", "\\*").replace("_", "\\_").replace("|", "\\|").replace("`", "\\`")
    if not word or abs(share) < 0.25:
        return word + space
    return (f"**{word}**" if share > 0 else f"_{word}_") + space


def figure(texts, probabilities, rows, class_names, title, labels=None):
    lines = []
    for i, (p, (tokens, scores)) in enumerate(zip(probabilities, rows)):
        c = int(p.argmax())
        truth = "" if labels is None else f", true {class_names[labels[i]]}" + ("" if labels[i] == c else " (wrong)")
        lines.append((tokens, scores, f"{i + 1}. predicted {class_names[c]} ({p[c]:.2f}){truth}"))
    return figures.highlighted_text(lines, f"{title}: green for the predicted class, red against it")


def pictures(logdir, splits, config, test=None) -> list:
    """Every epoch: fixed test texts with their predictions, and what each prediction rests on. At the end
    (given the test batches): the confusion matrix with the class names, and each class's precision, recall
    and F1 (a user's unbalanced labels: macro-F1 is their mean)."""
    sample = list(splits.test.take(SHOWN).as_numpy_iterator())
    first, labels = [t for t, _ in sample], [int(y) for _, y in sample]
    info, names = splits.info, list(splits.info["class_names"])
    if info.get("read") is not None:  # the splits hold row numbers (a user's file): their texts
        first = info["reader"](np.array(first, np.int64)).tolist()
    texts = [t.decode("utf-8") for t in first]
    vocabulary = info["vectorizer"].get_vocabulary() if config.model == "cnn" else None

    def epoch_end(model, when):
        predict = lambda batch: model.predict(info["encode"](tf.constant(batch)), verbose=0)  # noqa: E731
        probabilities, rows = Explainer(config.model, model, predict, info["encode"], vocabulary)(texts)
        return {"sample_predictions/table": table(texts, probabilities, labels, names),
                "explanations/text": markdown(texts, probabilities, rows, names, labels),
                "explanations/image": figure(texts, probabilities, rows, names, f"Test texts, {when}", labels)}

    def train_end(model, when):
        truth = np.concatenate([np.asarray(y) for _, y in test])
        predicted = model.predict(test, verbose=0).argmax(-1)
        return per_class(truth, predicted, names, when)

    return [Pictures(logdir, epoch_end=epoch_end, train_end=train_end if test is not None else None)]


MATRIX_CLASSES = 30  # the confusion matrix shows at most this many classes: the most frequent ones


def per_class(truth: np.ndarray, predicted: np.ndarray, names: list, when: str) -> dict:
    """The test set's confusion matrix (its MATRIX_CLASSES most frequent classes) and a table of every
    class's precision, recall, F1 and texts, worst F1 first."""
    matrix = confusion_matrix(truth, predicted, len(names))
    support, hits = matrix.sum(1), np.diag(matrix)
    precision = hits / np.maximum(matrix.sum(0), 1)
    recall = hits / np.maximum(support, 1)
    f1 = np.where(hits > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    shown = np.sort(np.argsort(-support, kind="stable")[:MATRIX_CLASSES])
    some = f"\nthe {len(shown)} most frequent of {len(names)} classes" if len(shown) < len(names) else ""
    title = (f"Test set, {len(truth):,} texts, {when}: accuracy {hits.sum() / max(len(truth), 1):.2%}, macro-F1 "
             f"{f1.mean():.3f}{some}\nrows: true class, columns: predicted class")
    rows = ["| class | precision | recall | F1 | texts |", "|---|---|---|---|---|"]
    rows += [f"| {names[c]} | {precision[c]:.3f} | {recall[c]:.3f} | {f1[c]:.3f} | {support[c]:,} |"
             for c in np.argsort(f1, kind="stable")]
    return {"confusion_matrix": figures.confusion_matrix(matrix[np.ix_(shown, shown)], [names[c] for c in shown],
                                                         title),
            "per_class/table": "\n".join(rows)}


def table(texts, probabilities, labels, class_names) -> str:
    rows = ["| text | predicted | p | true |", "|---|---|---|---|"]
    for text, p, label in zip(texts, probabilities, labels):
        mark = "" if p.argmax() == label else " **wrong**"
        cell = text.replace("|", "\\|").replace("\n", " ")[:200]
        rows.append(f"| {cell} | {class_names[p.argmax()]} | {p.max():.3f} | {class_names[label]}{mark} |")
    return "\n".join(rows)


def files(config, splits) -> dict:
    """Written beside the model and into its export: the label names, and what turns text into the model's ids."""
    written = {LABELS_FILE: json.dumps(list(splits.info["class_names"]))}
    if config.model == "lstm":
        written.update(characters.files(splits.info["vectorizer"]))
    if config.model == "cnn":
        written[WORD_VOCABULARY_FILE] = json.dumps(splits.info["vectorizer"].get_vocabulary())
    return written


def explain_text(model, given: str, version: Path) -> explain.Explanation:
    """--explain "TEXT": the exported model's label and the words it rests on."""
    if not given.strip():
        raise UsageError("--explain needs a non-empty text")
    run = json.loads((version / "run_config.json").read_text())
    kind, options = run["model"], run["options"]
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    predict = lambda batch: served(text=tf.constant(batch))["probabilities"].numpy()  # noqa: E731
    encode, vocabulary = None, None
    if kind == "lstm":
        chars = keras.layers.TextVectorization(split="character", standardize=None, output_mode="int",
                                               output_sequence_length=options["sequence_length"] + 2)
        chars.set_vocabulary(json.loads((version / characters.VOCABULARY_FILE).read_text()))
        encode = lambda t: {"char_ids": chars(characters.between_boundaries(t))}  # noqa: E731
    elif kind == "cnn":
        vocabulary = json.loads((version / WORD_VOCABULARY_FILE).read_text())
        words = keras.layers.TextVectorization(output_mode="int", output_sequence_length=options["sequence_length"])
        words.set_vocabulary(vocabulary)
        encode = lambda t: {"token_ids": words(t)}  # noqa: E731
    names = class_names(version)
    probabilities, rows = Explainer(kind, model, predict, encode, vocabulary)([given])
    c = int(probabilities[0].argmax())
    tokens, scores = rows[0]
    strongest = sorted(range(len(tokens)), key=lambda k: -abs(scores[k]))[:5]
    lines = [f"{tokens[k].strip()!r:>16} {scores[k]:+.3f}  ({'for' if scores[k] > 0 else 'against'})"
             for k in strongest]
    shares = ", ".join(f"{n} {p:.3f}" for n, p in zip(names, probabilities[0]))
    return explain.Explanation(f"{names[c]}  ({shares})", figure([given], probabilities, rows, names, "Your text"),
                               ["the words it rests on (" + ("occlusion" if kind == "bag" else "integrated gradients")
                                + "):", *lines])


def class_names(version: Path) -> list[str]:
    """The label names in the model's order: labels.json, or in a version exported before it, the phone recipe's."""
    for path, read in ((version / LABELS_FILE, lambda d: d), (version / "litert" / "preprocessing.json",
                                                             lambda d: d["outputs"]["label"]["names"])):
        if path.exists():
            return read(json.loads(path.read_text()))
    raise UsageError(f"--explain-model {version}: no {LABELS_FILE} beside the model; export it again")

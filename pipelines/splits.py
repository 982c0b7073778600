"""Which examples of a user's data train, validate and test: drawn with a seed, or given by the user.

    assignment = random_split(groups, validation=0.15, test=0.15, seed=42)   # int8 per example
    assignment = from_words(words)                     # a split column: train / validation / test per row
    files = record(assignment, {"data": "cars.csv", "sha256": ..., "how": "stratified by class, seed 42"})

Each example gets TRAIN, VALIDATION, TEST or LEFT_OUT (a row with no target).
random_split stratifies: every group (a class, or a band of a numeric target)
is shuffled on its own and cut in the same proportions, so a class with 5 % of
the rows has about 5 % of each split, and a small test set is not by chance
all one class. The draw depends on the seed and the data alone, so a resumed
run, --explain, tuning and the final evaluation all see the same rows.

record() is what the run folder keeps: split.json (counts, what was read,
how it was split) and split.npy (the assignment of every example, in the
data's order), so anyone can see which rows a model was tested on.
"""
from __future__ import annotations

import io
import json

import numpy as np

from core.errors import UsageError

TRAIN, VALIDATION, TEST, LEFT_OUT = 0, 1, 2, -1
NAMES = {TRAIN: "train", VALIDATION: "validation", TEST: "test"}
WORDS = {"train": TRAIN, "training": TRAIN, "validation": VALIDATION, "valid": VALIDATION, "val": VALIDATION,
         "dev": VALIDATION, "test": TEST, "testing": TEST, "holdout": TEST}


def parse_fractions(text: str) -> tuple[float, float]:
    """--split-fractions VALIDATION,TEST (e.g. 0.15,0.15): the shares held out; the rest trains."""
    try:
        validation, test = (float(p) for p in text.split(","))
    except ValueError:
        raise UsageError(f"--split-fractions takes VALIDATION,TEST shares such as 0.15,0.15, got {text!r}") from None
    if not (0 < validation < 1 and 0 < test < 1 and validation + test < 1):
        raise UsageError(f"--split-fractions {text}: each share must be between 0 and 1, and both together below 1")
    return validation, test


def random_split(groups: np.ndarray, validation: float, test: float, seed: int) -> np.ndarray:
    """int8 per example: each group (>= 0; LEFT_OUT for examples to leave out) cut at random in the
    given shares. A group keeps at least one training example."""
    rng = np.random.default_rng([seed % 2**32, 0x5EED])
    out = np.full(len(groups), LEFT_OUT, np.int8)
    for group in np.flatnonzero(np.bincount(groups[groups >= 0])):  # the groups present, without sorting
        rows = np.flatnonzero(groups == group)
        rows = rows[rng.permutation(len(rows))]
        n_test = int(round(len(rows) * test))
        n_validation = int(round(len(rows) * validation))
        while n_test + n_validation >= len(rows) and n_test + n_validation > 0:  # keep one to train on
            n_test, n_validation = (n_test - 1, n_validation) if n_test >= n_validation else (n_test, n_validation - 1)
        out[rows[:n_test]] = TEST
        out[rows[n_test:n_test + n_validation]] = VALIDATION
        out[rows[n_test + n_validation:]] = TRAIN
    return out


def bands(values: np.ndarray, count: int = 10) -> np.ndarray:
    """A numeric target as `count` bands of equal size (LEFT_OUT where it is NaN): what a regression
    split is stratified by, so every split covers the target's range."""
    out = np.full(len(values), LEFT_OUT, np.int32)
    present = ~np.isnan(values)
    if present.any():
        edges = np.unique(np.quantile(values[present], np.linspace(0, 1, count + 1)[1:-1]))
        out[present] = np.searchsorted(edges, values[present], side="right")
    return out


def from_words(words: np.ndarray, column: str) -> np.ndarray:
    """A split column's values (train / validation / test, or the words of WORDS) as the assignment."""
    out = np.full(len(words), LEFT_OUT, np.int8)
    lowered = np.char.lower(np.char.strip(words.astype(str)))
    unknown = sorted(set(np.unique(lowered)) - set(WORDS))
    if unknown:
        raise UsageError(f"--split-column {column!r} has the value {unknown[0]!r}; it may hold only train, validation "
                         "and test (or training, valid, val, dev, testing, holdout)")
    for word, split in WORDS.items():
        out[lowered == word] = split
    return out


def check(assignment: np.ndarray, where: str) -> dict:
    """{train, validation, test, left_out} counts; refuses a split with no training, validation or test rows."""
    counts = {name: int(np.sum(assignment == code)) for code, name in NAMES.items()}
    counts["left_out"] = int(np.sum(assignment == LEFT_OUT))
    empty = [name for name in NAMES.values() if counts[name] == 0]
    if empty:
        raise UsageError(f"{where} leaves no {empty[0]} rows ({counts['train']} train, {counts['validation']} "
                         f"validation, {counts['test']} test); give more rows or other --split-fractions")
    return counts


def record(assignment: np.ndarray, about: dict) -> dict:
    """The files the run folder keeps about its split: {name: bytes}."""
    buffer = io.BytesIO()
    np.save(buffer, assignment)
    counts = {name: int(np.sum(assignment == code)) for code, name in NAMES.items()}
    counts["left_out"] = int(np.sum(assignment == LEFT_OUT))
    summary = {**about, "counts": counts,
               "codes": {"0": "train", "1": "validation", "2": "test", "-1": "left out (no target)"}}
    return {"split.json": json.dumps(summary, indent=2).encode(), "split.npy": buffer.getvalue()}

"""The one test metric per served model that LiteRT files and new versions are judged by.

An app names it in Serving.metric as (kind, output): the serving output it is
computed from. Each kind has one tolerance, used both to refuse a compressed
LiteRT file and by the publishing gate (deployment/gate.py):
  accuracy    higher is better; worse by more than 0.3 points (absolute)
  mae         lower is better; worse by more than 2 % (relative)
  perplexity  lower is better; worse by more than 2 % (relative)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Kind(NamedTuple):
    higher_is_better: bool
    tolerance: float
    relative: bool


KINDS = {
    "accuracy": Kind(True, 0.003, False),
    "mae": Kind(False, 0.02, True),
    "perplexity": Kind(False, 0.02, True),
}


def score(kind: str, predictions: np.ndarray, targets: np.ndarray) -> float:
    predictions, targets = np.asarray(predictions), np.asarray(targets)
    if kind == "accuracy":
        return float(np.mean(predictions.argmax(-1) == targets.reshape(-1)))
    if kind == "mae":
        return float(np.mean(np.abs(predictions.reshape(-1).astype(np.float64) - targets.reshape(-1))))
    if kind == "perplexity":
        chosen = np.take_along_axis(predictions, targets.reshape(-1, 1).astype(np.int64), axis=-1)[:, 0]
        return float(np.exp(-np.mean(np.log(np.maximum(chosen.astype(np.float64), 1e-12)))))
    raise ValueError(f"unknown metric {kind!r}")


def loss(kind: str, reference: float, value: float) -> float:
    """How much worse value is than reference, in the kind's tolerance units (> 0: worse)."""
    k = KINDS[kind]
    worse = (reference - value) if k.higher_is_better else (value - reference)
    return worse / abs(reference) if k.relative and reference else worse


def within(kind: str, reference: float, value: float) -> bool:
    return loss(kind, reference, value) <= KINDS[kind].tolerance


def describe(kind: str, reference: float, value: float) -> str:
    """How much value loses: '0.40 points of accuracy (99.10 % against 99.50 %)', '3.1 % of mae (1.62 against 1.57)'."""
    if kind == "accuracy":
        return f"{(reference - value) * 100:.2f} points of accuracy ({value:.2%} against {reference:.2%})"
    return f"{loss(kind, reference, value):.1%} of {kind} ({value:.4g} against {reference:.4g})"


def tolerance_text(kind: str) -> str:
    k = KINDS[kind]
    return f"{k.tolerance:.0%} of {kind}" if k.relative else f"{k.tolerance * 100:.1f} points of {kind}"

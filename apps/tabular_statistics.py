"""What the model bakes in from a table's training rows: medians, means, deviations and quantile bins of
the numbers and dates, the categories' vocabularies, a sample of each text column, the regression target's
scale. Counted from the reading pass's codes where it can (no string of a large table is held in memory),
from a sample of at most STATISTICS_SAMPLE rows where a sample does.
"""
from __future__ import annotations

import numpy as np

from apps import tabular_data
from deployment import phone_inputs
from pipelines.tables import DATE

STATISTICS_SAMPLE = 200_000  # training values the quantile bins and text vocabularies are taken from, at most
MIN_COUNT = 2  # a category value seen fewer times in training is "unseen", so the unseen value is learned too
MAX_VOCABULARY = 10_000
QUANTILE_BINS = 16
TEXT_TOKENS = 2_000  # words kept per text column (the most frequent in training)


def statistics(prepared: tabular_data.Prepared, seed: int, rows: np.ndarray | None = None) -> dict:
    """What the model bakes in, from the training rows alone (or `rows`, row numbers of them: --smoke's):
    per number (and date) column its median, mean, deviation and quantile edges; per category its
    vocabulary; per text column a sample of its texts (a TextVectorization adapts on it); the regression
    target's mean and deviation.

    Category and date statistics come from the codes of the reading pass (a count per distinct value),
    so no string of a large table is held in memory; numbers and texts from at most STATISTICS_SAMPLE rows
    where a sample does (quantiles, vocabularies), from every row where it is cheap (medians, means)."""
    rng = np.random.default_rng([seed % 2**32, 7])
    local = training_rows(prepared, rows)
    out = {"numbers": {}, "categories": {}, "dates": {}, "texts": {}}
    for c in prepared.inputs:
        if c.kind == "number":
            values = np.concatenate([table.numbers(c.name)[at] for table, at in zip(prepared.tables, local)])
            out["numbers"][c.name] = number_statistics(values, rng)
        elif c.kind == "text":
            texts = tabular_data.Reader(prepared.tables, [c]).read(text_sample(local, rng))[c.served]
            out["texts"][c.name] = [t.decode() for t in texts]
        else:
            codes = np.asarray(prepared.tables[0].codes(c.name))[local[0]]  # training rows are all in --data
            values = prepared.tables[0].values(c.name)
            counts = np.bincount(codes[codes >= 0], minlength=len(values))
            if c.kind == "date":
                days = np.array([iso_days(v) for v in values])
                out["dates"][c.name] = number_statistics(np.repeat(days.astype(np.float32), counts), rng)
            else:
                order = sorted((i for i in range(len(values)) if counts[i] >= MIN_COUNT), key=lambda i: -counts[i])
                out["categories"][c.name] = [values[i] for i in order[:MAX_VOCABULARY]]
    if not prepared.classes:
        target = np.concatenate([tabular_data.labels(table, prepared.target.name, [], at)
                                 for table, at in zip(prepared.tables, local)])
        out["target"] = {"mean": float(np.mean(target)), "scale": float(np.std(target)) or 1.0}
    return out


def training_rows(prepared: tabular_data.Prepared, rows: np.ndarray | None) -> list:
    """Per table, the sorted row indices the statistics are taken from (reading a memory map in order)."""
    if rows is None:
        return [np.flatnonzero(a == tabular_data.splitting.TRAIN) for a in prepared.assignment]
    which, at = rows >> tabular_data.TABLE_SHIFT, rows & ((1 << tabular_data.TABLE_SHIFT) - 1)
    return [np.sort(at[which == t]) for t in range(len(prepared.tables))]


def text_sample(local: list, rng) -> np.ndarray:
    """Row numbers (with their table's bits) of every training row, or of STATISTICS_SAMPLE of them."""
    total = sum(len(at) for at in local)
    chosen = np.arange(total) if total <= STATISTICS_SAMPLE else np.sort(rng.choice(total, STATISTICS_SAMPLE,
                                                                                    replace=False))
    starts = np.cumsum([0] + [len(at) for at in local])
    which = np.searchsorted(starts, chosen, side="right") - 1
    return np.concatenate([local[t][chosen[which == t] - starts[t]] | (t << tabular_data.TABLE_SHIFT)
                           for t in range(len(local))])


def number_statistics(values: np.ndarray, rng) -> dict:
    """median, mean, scale (the deviation, 1 when there is none) and quantile bin edges of the present values."""
    present = values[~np.isnan(values)]
    if not len(present):
        return {"median": 0.0, "mean": 0.0, "scale": 1.0, "edges": [0.0, 1.0]}
    if len(present) <= STATISTICS_SAMPLE:
        present = sample = present.astype(np.float64)
        mean, scale = present.mean(), present.std()
    else:  # millions of values: float32 as read, the sums in float64 a chunk at a time (no float64 copy)
        sample = rng.choice(present, STATISTICS_SAMPLE, replace=False).astype(np.float64)
        mean, scale = moments(present)
    edges = np.unique(np.quantile(sample, np.linspace(0, 1, QUANTILE_BINS + 1)).astype(np.float32))
    return {"median": float(np.median(present)), "mean": float(mean), "scale": float(scale) or 1.0,
            "edges": [float(e) for e in edges] if len(edges) > 1 else [float(edges[0]), float(edges[0]) + 1.0]}


def moments(values: np.ndarray, chunk: int = 1 << 20) -> tuple[float, float]:
    """Mean and deviation of a large float32 array, accumulated in float64 a chunk at a time."""
    n = len(values)
    mean = sum(float(values[i:i + chunk].sum(dtype=np.float64)) for i in range(0, n, chunk)) / n
    squares = sum(float(np.square(values[i:i + chunk].astype(np.float64) - mean).sum()) for i in range(0, n, chunk))
    return mean, (squares / n) ** 0.5


def iso_days(text: str) -> float:
    """Days since 1970-01-01 of an ISO date as tabular_layers.DateParts reads it, NaN if it is not one."""
    if not DATE.match(text):
        return float("nan")
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return float("nan")
    return float(phone_inputs.days_from_civil(year, month, day))

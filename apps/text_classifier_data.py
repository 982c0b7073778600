"""A user's labelled texts for apps.text_classifier: read (pipelines/text_files.py), merged with the
validation and test files the user gives, split, and turned into splits of row numbers whose texts are read
from the cache batch by batch.

    prepared = prepare_once(config)        # refuses what cannot be used, one line; prints what was read once
    splits = as_splits(prepared, config)   # (row, label) datasets; info["read"](rows) -> the texts

Rows are numbered across the sources in order (--data, then --validation-data, then --test-data). The
split: the given files, else the split folders or --split-column, else seeded and stratified by label
(--split-fractions); a split the user did not give is drawn from the training rows with the seed.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from core.errors import UsageError
from pipelines import splits as splitting, text_files
from pipelines.input import Splits

SMOKE_TEXTS = (1024, 256, 256)  # train, validation, test texts of --smoke
FEW = 10  # a label with fewer texts than this is named in a warning


class Prepared(NamedTuple):
    sources: list  # text_files.Texts: --data, then --validation-data and --test-data when given
    starts: np.ndarray  # the first row of each source, and the total at the end
    classes: list
    labels: np.ndarray  # int64 per row
    assignment: np.ndarray  # int8 per row (pipelines/splits.py codes)
    notes: list  # what was read, dropped and chosen, a line each

    def reader(self):
        """rows -> their texts (UTF-8 bytes, an object array), with each source's cache opened once."""
        stores = [text_files.Store(source.cache) for source in self.sources]

        def read(rows) -> np.ndarray:
            rows = np.asarray(rows, np.int64)
            which = np.searchsorted(self.starts, rows, side="right") - 1
            out = np.empty(len(rows), object)
            for s in np.unique(which):
                mine = which == s
                out[mine] = stores[s](rows[mine] - self.starts[s])
            return out

        return read


def options_of(config) -> text_files.Options:
    o = config.options
    return text_files.Options(o["text_column"], o["label_column"], o["split_column"], o["encoding"], o["delimiter"],
                              o["suffix"], o["skip_bad_rows"])


def prepare(config, print_=print) -> Prepared:
    o = config.options
    options = options_of(config)
    given = [("--data", o["data"], None), ("--validation-data", o["validation_data"], splitting.VALIDATION),
             ("--test-data", o["test_data"], splitting.TEST)]
    sources, codes = [], []
    for flag, path, code in given:
        if not path:
            continue
        texts = text_files.read(path, config.data_dir, options, print_)
        if flag == "--data" and texts.counts["texts"] == 0:
            raise UsageError(f"--data {path}: no text left after dropping {_dropped(texts.counts)}")
        sources.append(texts)
        codes.append(code)
    classes = sorted(set().union(*(t.classes for t in sources)))
    train_classes = set(sources[0].classes)
    for texts in sources[1:]:
        extra = sorted(set(texts.classes) - train_classes)
        if extra:
            raise UsageError(f"{texts.source} has the label {extra[0]!r}, which --data {o['data']} never has: the "
                             "model could not learn it")
    if len(classes) < 2:
        raise UsageError(f"--data {o['data']}: every text has the label {classes[0]!r}; a classifier needs at least "
                         "two labels")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.concatenate([np.array([index[c] for c in t.classes], np.int64)[t.labels] if len(t.labels)
                             else np.zeros(0, np.int64) for t in sources])
    starts = np.cumsum([0] + [len(t.labels) for t in sources])
    assignment, how = _split(config, sources, codes, labels, starts)
    counts = splitting.check(assignment, f"--data {o['data']}")
    notes = [_read_line(t, options) for t in sources]
    few = _few(labels[assignment == splitting.TRAIN], classes)
    notes += [f"  {len(classes)} labels; split: {how} ({counts['train']:,} train, {counts['validation']:,} validation, "
              f"{counts['test']:,} test)"] + ([few] if few else [])
    return Prepared(sources, starts, classes, labels, assignment, notes)


def _split(config, sources, codes, labels, starts) -> tuple[np.ndarray, str]:
    o = config.options
    validation, test = splitting.parse_fractions(o["split_fractions"])
    main = sources[0]
    assignment = np.full(len(labels), splitting.TRAIN, np.int8)
    for code, start, end in zip(codes, starts[:-1], starts[1:]):
        if code is not None:
            assignment[start:end] = code
    if main.split is not None:
        assignment[:starts[1]] = main.split
        how = "as " + (f"--split-column {o['split_column']!r} says" if o["split_column"] else f"the {main.layout} say")
    elif len(sources) > 1:
        how = "as the files given say"
    else:
        return splitting.random_split(labels, validation, test, config.seed), (
            f"stratified by label, seed {config.seed}, shares {validation:g} validation, {test:g} test")
    train = np.flatnonzero(assignment == splitting.TRAIN)
    holes = [(v if not np.any(assignment == code) else 0.0) for code, v in
             ((splitting.VALIDATION, validation), (splitting.TEST, test))]
    if any(holes):
        assignment[train] = splitting.random_split(labels[train], *holes, config.seed)
        how += "; " + ", ".join(n for n, h in zip(("validation", "test"), holes) if h) + f" drawn from train, seed " \
                                                                                         f"{config.seed}"
    return assignment, how


def _dropped(counts: dict) -> str:
    return (f"{counts['empty_dropped']:,} empty text(s) and {counts['unlabelled_dropped']:,} without a label"
            + (f", and skipping {counts['bad_rows_skipped']:,} bad row(s)" if counts["bad_rows_skipped"] else ""))


def _read_line(texts, options) -> str:
    c = counts = texts.counts
    parts = [f"{texts.source}: {c['texts']:,} texts ({texts.layout})"]
    if c["empty_dropped"] or c["unlabelled_dropped"] or c["bad_rows_skipped"]:
        parts.append(f"dropped {_dropped(counts)}")
    if c["lines_with_undecodable_bytes"]:
        where = ", ".join(f"{Path(f).name}:{line}" for f, line in texts.first_bad)
        parts.append(f"{c['undecodable_bytes']:,} byte(s) on {c['lines_with_undecodable_bytes']:,} line(s) are not "
                     f"{options.encoding} and were replaced by U+FFFD (first: {where}; another --encoding?)")
    if c["conflicting_duplicates"]:
        parts.append(f"{c['conflicting_duplicates']:,} texts also appear with another label (kept)")
    return "; ".join(parts)


def _few(train_labels: np.ndarray, classes: list) -> str:
    """A warning naming the labels with fewer than FEW training texts, or ""."""
    counts = np.bincount(train_labels, minlength=len(classes))
    few = [(classes[i], int(counts[i])) for i in np.argsort(counts, kind="stable") if counts[i] < FEW]
    if not few:
        return ""
    named = ", ".join(f"{name!r} ({n})" for name, n in few[:8]) + (f" and {len(few) - 8} more" if len(few) > 8 else "")
    return f"  warning: {len(few)} label(s) have fewer than {FEW} training texts, too few to learn well: {named}"


_PREPARED: dict = {}


def prepare_once(config) -> Prepared:
    """prepare(), once per process for the same data and settings: its lines are printed once."""
    o = config.options
    key = (config.data_dir, config.seed, *(o[k] for k in ("data", "validation_data", "test_data", "text_column",
                                                            "label_column", "split_column", "encoding", "delimiter",
                                                            "suffix", "skip_bad_rows", "split_fractions")))
    if key not in _PREPARED:
        _PREPARED[key] = prepare(config)
        print("\n".join(_PREPARED[key].notes), flush=True)
    return _PREPARED[key]


def rows_of(prepared: Prepared, code: int, seed: int) -> np.ndarray:
    """One split's rows, in an order shuffled by the seed (so --smoke's slice has every label)."""
    rows = np.flatnonzero(prepared.assignment == code)
    return rows[np.random.default_rng([seed % 2**32, code]).permutation(len(rows))]


def as_splits(prepared: Prepared, config):
    """(splits of (row, label), the training texts batched (what the vectorizers adapt on), read: rows -> their
    texts in a tf.data pipeline)."""
    datasets = []
    for code, smoke in zip((splitting.TRAIN, splitting.VALIDATION, splitting.TEST), SMOKE_TEXTS):
        rows = rows_of(prepared, code, config.seed)
        rows = rows[:smoke] if config.smoke else rows
        datasets.append(tf.data.Dataset.from_tensor_slices((rows, prepared.labels[rows])))
    reader = prepared.reader()

    def read(rows):
        texts = tf.numpy_function(reader, [rows], tf.string, stateful=False)
        texts.set_shape([None])
        return texts

    about = {"data": [t.source for t in prepared.sources], "caches": [t.cache.name for t in prepared.sources],
             "classes": prepared.classes, "rows": "numbered across the sources in order: --data, --validation-data, "
                                                  "--test-data"}
    files = splitting.record(prepared.assignment, about)
    info = {"class_names": tuple(prepared.classes), "counts": {}, "prepared": prepared, "reader": reader}
    splits = Splits(*datasets, source=", ".join(t.source for t in prepared.sources) +
                    f" ({int(prepared.starts[-1]):,} texts)", info=info, cache=False, files=files)
    texts = datasets[0].batch(1024).map(lambda rows, labels: read(rows))
    return splits, texts, read

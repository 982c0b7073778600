"""A user's table as the suite's splits: read once, typed, split, and fed to training by row number.

    prepared = prepare(config)  # read (pipelines/tables.py), typed (pipelines/columns.py), split (pipelines/splits.py)
    splits = as_splits(prepared, config)

prepare() does everything that can refuse the data, and runs from the app's
check_config: a file that cannot be used is one line and exit 2 before the run
makes its folder. The splits hold row numbers, not values: vectorize reads a
batch's values from the columnar cache on disk (Reader), so a table larger than
memory trains, and the exported model's serving inputs are exactly what a
batch of training rows holds (numbers as float32 with NaN for missing, every
other column as its raw strings).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from core.errors import UsageError
from pipelines import columns, splits as splitting, tables
from pipelines.input import Splits

SMOKE_ROWS = (512, 128, 128)  # train, validation, test rows of --smoke
TABLE_SHIFT = 40  # a row number's bits above this say which file it is in (0: --data, 1: --validation-data, ...)
OTHER = b"\x00other"  # a value past the reading pass's distinct-value limit: always unseen


class Column(NamedTuple):
    name: str  # as written in the file's header
    served: str  # the serving input's name (columns.serving_names)
    kind: str  # columns.KINDS
    dtype: str  # "float32" (numbers) or "string" (everything else, raw)


class Prepared(NamedTuple):
    tables: list  # [--data] or [--data, --validation-data and/or --test-data]
    target: Column
    inputs: list  # the Columns the model reads, in the file's order
    kinds: dict  # column -> columns.Kind, every column of the file
    task: columns.Task
    classes: list  # classification: the labels as written, in order; regression: []
    assignment: list  # per table: int8 per row (pipelines/splits.py codes)
    counts: dict  # rows per split, and left out
    source: str  # what the run reads, for its record
    about: dict  # split.json's description of the data and the split


def options(config) -> tables.Options:
    return tables.Options(config.options["delimiter"], config.options["encoding"], config.options["skip_bad_rows"])


def prepare(config, say=print) -> Prepared:
    """Read --data (and any --validation-data / --test-data), type its columns, infer the task, split the rows.
    Everything wrong with the data is refused here, one line."""
    o = config.options
    main = tables.read(o["data"], config.data_dir, options(config), progress=say)
    extra = {flag: tables.read(o[flag], config.data_dir, options(config), progress=say)
             for flag in ("validation_data", "test_data") if o.get(flag)}
    overrides = columns.Overrides(*(columns.split_names(o[f]) for f in ("numeric", "categorical", "text", "ignore")))
    kinds = columns.infer(main, o["target"], overrides)
    if o["split_column"]:
        if o["split_column"] not in main.header:
            raise UsageError(f"--split-column {o['split_column']!r} is not a column of {main.path.name}; its columns "
                             f"are {', '.join(main.header)}")
        kinds[o["split_column"]] = columns.Kind("ignored", "--split-column")
    task = columns.infer_task(main, o["target"], kinds[o["target"]], o["task"])
    names = columns.serving_names(main.header)
    inputs = [Column(c, names[c], k.kind, "float32" if k.kind in ("number",) else "string")
              for c, k in kinds.items() if c != o["target"] and k.kind in columns.USED]
    if not inputs:
        raise UsageError(f"{main.path.name}: no column is left to predict {o['target']!r} from (every other column is "
                         "an identifier, constant or ignored); --numeric or --categorical can bring one back")
    target = Column(o["target"], names[o["target"]], kinds[o["target"]].kind, "")
    for flag, table in extra.items():
        missing = [c.name for c in [*inputs, target] if c.name not in table.header]
        if missing:
            raise UsageError(f"--{flag.replace('_', '-')} {table.path.name} has no column {missing[0]!r}, which "
                             f"{main.path.name} has; it needs the same columns")
    tables_ = [main, *extra.values()]
    classes = class_names(tables_, target.name) if task.task == "classification" else []
    if classes:
        check_class_sizes(tables_, target.name, classes)
    assignment, how = split(config, tables_, extra, target.name, classes)
    counts = splitting.check(np.concatenate(assignment), f"{main.path.name}'s split ({how})")
    if classes:
        check_trained(tables_, assignment, target.name, classes)
    fingerprints = {t.path.name: t.cache.name for t in tables_}
    about = {"data": {str(t.path): t.cache.name for t in tables_}, "rows": [t.rows for t in tables_], "how": how,
             "target": target.name, "task": task.task, "classes": classes,
             "serving_names": {c: n for c, n in names.items() if c != n}}
    source = (f"{', '.join(str(t.path) for t in tables_)} ({sum(t.rows for t in tables_):,} rows: {counts['train']:,} "
              f"train / {counts['validation']:,} validation / {counts['test']:,} test"
              + (f", {counts['left_out']:,} without a target left out" if counts["left_out"] else "")
              + f"; {how}; sha256 {', '.join(fingerprints.values())})")
    return Prepared(tables_, target, inputs, kinds, task, classes, assignment, counts, source, about)


_PREPARED: dict = {}


def prepare_once(config) -> Prepared:
    """prepare(), once per process for the same data and settings (check_config, load_data and every
    tuning trial ask): its column table is printed once."""
    o = config.options
    key = (tuple((o[f], _stamp(o[f])) for f in ("data", "validation_data", "test_data") if o[f]), config.data_dir,
           config.seed, *(str(o[f]) for f in ("target", "task", "numeric", "categorical", "text", "ignore", "delimiter",
                                              "encoding", "skip_bad_rows", "split_column", "split_fractions")))
    if key not in _PREPARED:
        prepared = _PREPARED[key] = prepare(config)
        print(describe(prepared), flush=True)
    return _PREPARED[key]


def describe(prepared: Prepared) -> str:
    """What the run prints about its data: each file, skipped rows, and the column table."""
    lines = []
    for table in prepared.tables:
        names = {",": "comma", "\t": "tab", ";": "semicolon", "|": "bar"}
        delimiter = names.get(table.delimiter, repr(table.delimiter))
        lines.append(f"{table.path}: {table.rows:,} rows, {len(table.header)} columns, {delimiter}-separated")
        if table.bad_rows:
            lines.append("  " + tables.describe_bad_rows(table))
    names = {c.name: c.served for c in prepared.inputs}
    names[prepared.target.name] = prepared.target.served
    lines.append(columns.describe(prepared.tables[0], prepared.kinds, prepared.target.name, prepared.task, names))
    return "\n".join(lines)


def _stamp(given: str) -> tuple:
    try:
        status = Path(given).stat()
        return status.st_size, status.st_mtime_ns
    except OSError:
        return ()


def class_names(tables_: list, target: str) -> list:
    """The target's values as written, numerically ordered when they are numbers."""
    found = sorted({v for t in tables_ for v in t.values(target)})
    try:
        return sorted(found, key=float)
    except ValueError:
        return found


def labels(table, target: str, classes: list, rows: np.ndarray | None = None) -> np.ndarray:
    """Per row (of `rows`, or every row): the class index (classification, int32; -1 missing) or the number
    (regression, float32; NaN missing). 4 bytes a row: a table of 30 million rows holds 120 MB of them."""
    if not classes:
        numbers = table.numbers(target)
        return np.array(numbers if rows is None else numbers[rows], np.float32)
    index = {c: i for i, c in enumerate(classes)}
    # codes index this directly: -1 (missing) and -2 (past the distinct limit) are its last two entries
    of_code = np.array([index[v] for v in table.values(target)] + [-1, -1], np.int32)
    codes = table.codes(target)
    return of_code[codes if rows is None else codes[rows]]


def split(config, tables_: list, extra: dict, target: str, classes: list) -> tuple[list, str]:
    """Per table, the split of each row, and how it was made (for the record)."""
    o = config.options
    main = tables_[0]
    main_labels = labels(main, target, classes)
    present = main_labels >= 0 if classes else ~np.isnan(main_labels)
    groups = main_labels if classes else splitting.bands(main_labels)  # -1 where the target is missing
    del main_labels
    if o["split_column"]:
        words = np.array(main.values(o["split_column"]) + [""], dtype=object)
        codes = np.asarray(main.codes(o["split_column"]))
        assignment = splitting.from_words(words[np.where(codes >= 0, codes, -1)], o["split_column"])
        how = f"--split-column {o['split_column']}"
    else:
        validation, test = splitting.parse_fractions(o["split_fractions"])
        if "validation_data" in extra:
            validation = 0.0
        if "test_data" in extra:
            test = 0.0
        assignment = splitting.random_split(groups, validation, test, config.seed)
        how = (("stratified by class" if classes else "stratified by target band") + f", seed {config.seed}"
               + (f", validation {validation:g}" if validation else "") + (f", test {test:g}" if test else ""))
    assignment = np.where(present, assignment, splitting.LEFT_OUT).astype(np.int8)
    out = [assignment]
    for flag, table in extra.items():
        code = splitting.VALIDATION if flag == "validation_data" else splitting.TEST
        rows = labels(table, target, classes)
        kept = rows >= 0 if classes else ~np.isnan(rows)
        out.append(np.where(kept, code, splitting.LEFT_OUT).astype(np.int8))
        how += f", --{flag.replace('_', '-')} {table.path.name}"
    return out, how


def check_class_sizes(tables_: list, target: str, classes: list) -> None:
    """Every class needs two rows: one to learn from, one to test on."""
    counts = sum(np.bincount(found[found >= 0], minlength=len(classes))
                 for found in (labels(t, target, classes) for t in tables_))
    few = [(c, int(n)) for c, n in zip(classes, counts) if n < 2]
    if few:
        raise UsageError(f"--target {target!r}: class {few[0][0]!r} has {few[0][1]} row; a class needs at least 2 (one "
                         "to learn from, one to test on): add rows of it, or leave them out of the file")


def check_trained(tables_: list, assignment: list, target: str, classes: list) -> None:
    """A class found only in the validation or test file has nothing to learn it from."""
    trained = sum(np.bincount(found[(found >= 0) & (assigned == splitting.TRAIN)], minlength=len(classes))
                  for found, assigned in ((labels(t, target, classes), a) for t, a in zip(tables_, assignment)))
    untrained = [c for c, n in zip(classes, trained) if n == 0]
    if untrained:
        raise UsageError(f"--target {target!r}: class {untrained[0]!r} has no training rows (only validation or "
                         "test ones); give the training data rows of it")


# ---- Splits of row numbers, and their values read from the cache --------------

class Reader:
    """A batch of row numbers -> the served columns' values: numbers as float32 (NaN missing), the other
    columns as their raw UTF-8 strings ("" missing). Memory maps are opened per batch and let go, so a
    table larger than memory is read a batch at a time and never stays resident."""

    def __init__(self, tables_: list, inputs: list):
        self.tables, self.inputs = tables_, inputs
        self.values = [{c.name: np.array([v.encode() for v in t.values(c.name)] + [OTHER, b""], dtype=object)
                        for c in inputs if c.dtype == "string" and c.kind != "text"} for t in tables_]

    def read(self, rows: np.ndarray) -> dict:
        rows = np.asarray(rows, np.int64)
        which, local = rows >> TABLE_SHIFT, rows & ((1 << TABLE_SHIFT) - 1)
        out = {c.served: np.empty(len(rows), np.float32 if c.dtype == "float32" else object) for c in self.inputs}
        for t in np.unique(which):
            chosen = np.flatnonzero(which == t)
            table, at = self.tables[t], local[chosen]
            for c in self.inputs:
                if c.dtype == "float32":
                    out[c.served][chosen] = table.numbers(c.name)[at]
                elif c.kind == "text":
                    out[c.served][chosen] = [s.encode() for s in table.texts(c.name, at)]
                else:  # codes -1 (missing) and -2 (past the distinct limit) index the two entries after the values
                    out[c.served][chosen] = self.values[t][c.name][table.codes(c.name)[at]]
        return out

    def tensors(self, rows: tf.Tensor) -> dict:
        """read() inside a tf.data pipeline."""
        dtypes = [tf.float32 if c.dtype == "float32" else tf.string for c in self.inputs]
        values = tf.numpy_function(lambda r: list(self.read(r).values()), [rows], dtypes, stateful=False)
        for v in values:
            v.set_shape([None])
        return dict(zip([c.served for c in self.inputs], values))


def rows_of(prepared: Prepared, code: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(row numbers, labels) of one split, in an order shuffled by the seed (the training split's epochs
    reshuffle on top of it; a large split's shuffle buffer then mixes rows from all over the file)."""
    numbers, found = [], []
    for t, (table, assigned) in enumerate(zip(prepared.tables, prepared.assignment)):
        rows = np.flatnonzero(assigned == code)
        found.append(labels(table, prepared.target.name, prepared.classes, rows))
        numbers.append(rows | (t << TABLE_SHIFT))
    numbers, found = np.concatenate(numbers), np.concatenate(found)
    order = np.random.default_rng([seed % 2**32, code]).permutation(len(numbers))
    return numbers[order], found[order]


def as_splits(prepared: Prepared, config, info: dict) -> Splits:
    """Train / validation / test datasets of (row number, label); Splits.vectorize reads the values."""
    reader = Reader(prepared.tables, prepared.inputs)
    datasets = []
    for code, smoke in zip((splitting.TRAIN, splitting.VALIDATION, splitting.TEST), SMOKE_ROWS):
        rows, found = rows_of(prepared, code, config.seed)
        if config.smoke:
            rows, found = rows[:smoke], found[:smoke]
        label = found if prepared.classes else found[:, None]
        datasets.append(tf.data.Dataset.from_tensor_slices((rows, label)))
        del rows, found, label  # the dataset holds its own copies (two: about 24 bytes a row in all)

    def vectorize(rows, found):
        return reader.tensors(rows), found

    files = splitting.record(np.concatenate(prepared.assignment), prepared.about)
    files["columns.json"] = json.dumps(columns_record(prepared), indent=2).encode()
    return Splits(*datasets, source=prepared.source, info={**info, "reader": reader, "prepared": prepared},
                  vectorize=vectorize, cache=False, files=files)


def columns_record(prepared: Prepared) -> dict:
    """columns.json: every column, its type and why, and the name it is served under."""
    return {"target": {"column": prepared.target.name, "served_as": prepared.target.served,
                       "task": prepared.task.task, "classes": prepared.classes},
            "columns": [{"column": name, "type": kind.kind, "why": kind.why,
                         **next(({"served_as": c.served, "dtype": c.dtype} for c in prepared.inputs if c.name == name),
                                {})}
                        for name, kind in prepared.kinds.items()]}


def served_path(given: str) -> str:
    return Path(given).stem

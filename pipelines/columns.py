"""What each column of a user's table is, what the run does with it, and what task its target makes.

    kinds = infer(table, target="mpg", overrides=Overrides(ignore=("name",)))
    task = infer_task(table, kinds["mpg"], "auto")      # Task("regression", ...) or Task("classification", ...)
    print(describe(table, kinds, target, task))

The rules read the statistics of the reading pass (pipelines/tables.py), never
the rows again. They follow Ludwig's and AutoKeras' inference where it serves
users and avoid what their users complain of:
  constant    one distinct value (or none): left out, it carries nothing
  number      every present value parses as a number (a stray word or two in
              thousands counts as missing, and is said); 0/1 only is boolean
  identifier  a number column of distinct, nearly consecutive integers (a row
              number), or words that are distinct in nearly every row and are
              not prose (codes, e-mail addresses): left out, and said, because
              a model that learns them memorises rows. AutoKeras trains on ids;
              its users' issues show models that do not generalise.
  boolean     two distinct values that are true/false words or 0/1
  date        dates written year first (2012-01-31 or 2012/01/31, optionally with
              a time): the days since 1970, month, day of week, day of year and
              hour become features
  text        prose (2.5+ words or 25+ characters on average) that is mostly
              distinct: a bag of its words (TF-IDF)
  category    everything else: a learned embedding of each value, with a value
              of its own for "missing" and one for values never seen in training
Integer columns with few values (cylinders, a rating) stay numbers: their order
means something, which a category would forget. Ludwig makes them categories;
--categorical makes them so here. --numeric, --categorical, --text and --ignore
override any rule.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from core.errors import UsageError

KINDS = ("number", "category", "boolean", "text", "date", "identifier", "constant")
USED = ("number", "category", "boolean", "text", "date")
NUMERIC_SHARE = 0.99  # at least this share of present values must parse as numbers for a number column
DATE_SHARE = 0.95
IDENTIFIER_SHARE = 0.95  # distinct values / present values of an identifier
IDENTIFIER_MIN_ROWS = 50  # below this a column of distinct values says nothing about being an identifier
CLASSIFICATION_MAX_INTEGERS = 10  # a numeric target of at most this many distinct integers is a class label
TRUE_WORDS = frozenset({"true", "yes", "t", "y", "1", "1.0"})
FALSE_WORDS = frozenset({"false", "no", "f", "n", "0", "0.0"})
ID_NAME = re.compile(r"(^|[^a-z])(id|idx|index|key|uuid|row)$|^unnamed: ?\d+$", re.IGNORECASE)


class Overrides(NamedTuple):
    numeric: tuple = ()
    categorical: tuple = ()
    text: tuple = ()
    ignore: tuple = ()

    def given(self) -> dict:
        """column -> the kind a flag forces on it."""
        forced = {}
        for flag, kind in (("numeric", "number"), ("categorical", "category"), ("text", "text"), ("ignore", "ignored")):
            for name in getattr(self, flag):
                if name in forced and forced[name] != kind:
                    raise UsageError(f"column {name!r} is given to two of --numeric, --categorical, --text, --ignore; "
                                     "give it to one")
                forced[name] = kind
        return forced


class Kind(NamedTuple):
    kind: str  # one of KINDS, or "ignored" (--ignore)
    why: str  # why the rules chose it (or "--categorical"), for the column table


class Task(NamedTuple):
    task: str  # "regression" or "classification"
    why: str


def split_names(values: list | None) -> tuple:
    """--numeric a,b --numeric c -> ("a", "b", "c")."""
    return tuple(n.strip() for v in values or () for n in v.split(",") if n.strip())


def check_names(table, target: str, overrides: Overrides) -> None:
    """--target and every overridden column must be in the file; the refusal lists its columns."""
    listed = ", ".join(table.header)
    if not target:
        raise UsageError(f"--target: name the column to predict; {table.path.name} has columns {listed}")
    if target not in table.header:
        raise UsageError(f"--target {target!r} is not a column of {table.path.name}; its columns are {listed}")
    for name, kind in overrides.given().items():
        if name not in table.header:
            flag = {"number": "--numeric", "category": "--categorical", "text": "--text", "ignored": "--ignore"}[kind]
            raise UsageError(f"{flag} {name!r} is not a column of {table.path.name}; its columns are {listed}")
        if name == target and kind == "ignored":
            raise UsageError(f"--ignore {name!r} is the --target; the target cannot be left out")


def infer_kind(name: str, stats: dict, rows: int, has_texts: bool) -> Kind:
    """One column's kind from its reading-pass statistics (the module's docstring has the rules)."""
    present = rows - stats["missing"]
    distinct = stats["distinct"]
    if present == 0:
        return Kind("constant", "every value is missing")
    if distinct <= 1:
        return Kind("constant", "one value in every row")
    if stats["numeric"] >= NUMERIC_SHARE * present:
        integers = stats["integer"] == stats["numeric"]
        if distinct == 2 and {stats["min"], stats["max"]} == {0.0, 1.0}:
            return Kind("boolean", "0 and 1 only")
        if integers and distinct >= IDENTIFIER_SHARE * present and present >= IDENTIFIER_MIN_ROWS:
            span = stats["max"] - stats["min"] + 1
            if span <= 1.1 * distinct:
                return Kind("identifier", "a different integer in every row, nearly consecutive (a row number)")
            if ID_NAME.search(name):
                return Kind("identifier", "a different integer in every row, and named like an id")
        return Kind("number", "numbers" + (f" ({present - stats['numeric']} other values count as missing)"
                                           if stats["numeric"] < present else ""))
    if distinct == 2 and stats["boolean"] == present:
        return Kind("boolean", "two true/false words")
    if stats["date"] >= DATE_SHARE * present:
        return Kind("date", "dates, year first")
    prose = has_texts
    mostly_distinct = distinct >= 0.3 * present
    if prose and mostly_distinct:
        return Kind("text", f"prose: {stats['words'] / present:.1f} words on average")
    if distinct >= IDENTIFIER_SHARE * present and present >= IDENTIFIER_MIN_ROWS:
        return Kind("identifier", "a different value in nearly every row")
    return Kind("category", f"{distinct:,} distinct values" if not prose else "prose, but few distinct values")


def infer(table, target: str, overrides: Overrides) -> dict:
    """column -> Kind for every column of the table (the target's own kind decides the task)."""
    check_names(table, target, overrides)
    forced = overrides.given()
    flags = {"number": "--numeric", "category": "--categorical", "text": "--text", "ignored": "--ignore"}
    kinds = {}
    for name in table.header:
        if name in forced:
            kind = forced[name]
            if kind == "text" and not table.has_texts(name):
                raise UsageError(f"--text {name!r}: its values were not kept as text by the reading pass (they look "
                                 "like short labels, not prose); use --categorical for it")
            if kind == "number" and table.stats[name]["numeric"] == 0:
                raise UsageError(f"--numeric {name!r}: none of its values is a number")
            kinds[name] = Kind(kind, flags[kind])
        else:
            kinds[name] = infer_kind(name, table.stats[name], table.rows, table.has_texts(name))
    return kinds


def infer_task(table, target: str, kind: Kind, asked: str) -> Task:
    """regression or classification, from --task or from the target's values."""
    stats = table.stats[target]
    distinct = stats["distinct"]
    present = table.rows - stats["missing"]
    if present == 0:
        raise UsageError(f"--target {target!r} is missing in every row; nothing to learn from")
    if distinct <= 1:
        raise UsageError(f"--target {target!r} has one value ({table.values(target)[0]!r}) in every row; "
                         "nothing to learn: pick a column whose value varies")
    numeric = stats["numeric"] >= NUMERIC_SHARE * present
    if asked == "regression":
        if not numeric:
            raise UsageError(f"--task regression: --target {target!r} holds words, not numbers; use --task "
                             "classification (or auto)")
        return Task("regression", "--task regression")
    if asked == "classification":
        return Task("classification", "--task classification")
    if numeric and kind.kind != "boolean":
        integers = stats["integer"] == stats["numeric"]
        if integers and distinct <= CLASSIFICATION_MAX_INTEGERS:
            return Task("classification", f"{distinct} distinct integers (--task regression to predict a number)")
        return Task("regression", f"{distinct:,} distinct numbers" if not stats["distinct_capped"] else
                    "numbers (--task classification to predict classes)")
    if distinct > 1000:
        raise UsageError(f"--target {target!r} has {distinct:,} distinct values: too many classes to learn from "
                         f"{present:,} rows; is it the column you meant?")
    return Task("classification", f"{distinct} classes")


USE = {
    "number": "standardised + quantile bins; missing -> training median, flagged",
    "category": "embedding; missing and unseen values have their own",
    "boolean": "0/1; missing -> flagged",
    "text": "TF-IDF of its words",
    "date": "year, month, weekday, day of year",
    "identifier": "left out: --categorical or --numeric to use it",
    "constant": "left out",
    "ignored": "left out (--ignore)",
}


def describe(table, kinds: dict, target: str, task: Task, names: dict) -> str:
    """The column table the run prints: column, type, distinct values, share missing, what is done with it."""
    rows = [("column", "type", "distinct", "missing", "use")]
    for column in table.header:
        stats, kind = table.stats[column], kinds[column]
        distinct = f"{stats['distinct']:,}" + ("+" if stats["distinct_capped"] else "")
        missing = f"{stats['missing'] / table.rows:.1%}"
        if column == target:
            use = f"target: {task.task} ({task.why})"
        else:
            use = USE[kind.kind] + (f" ({kind.why})" if kind.why.startswith("--") else "")
        shown = column if names.get(column, column) == column else f"{column} (served as {names[column]})"
        rows.append((shown, kind.kind, distinct, missing, use))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}"
                     for r in rows)


SIGNATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def serving_names(header: list) -> dict:
    """column -> the name it is served under: a Python identifier, which every part of the path takes (Keras
    input names, tf.function arguments, SignatureDef keys, LiteRT tensor names). Any other character becomes
    '_', a name starting with a digit gets 'column_' before it, and a name that collides gets a number."""
    names, taken = {}, set()
    for column in header:
        name = column if SIGNATURE_NAME.match(column) else re.sub(r"[^A-Za-z0-9_]+", "_", column).strip("_")
        name = name if name and not name[0].isdigit() else f"column_{name}".rstrip("_")
        base, n = name, 2
        while name.lower() in taken:  # case-insensitive: file systems and some clients fold case
            name, n = f"{base}_{n}", n + 1
        taken.add(name.lower())
        names[column] = name
    return names

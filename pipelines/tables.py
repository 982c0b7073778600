"""A user's table (CSV or TSV), read in one streaming pass into a columnar cache that training reads from.

    table = read("cars.csv", data_dir)          # or Options(delimiter="\t", encoding="latin-1", skip_bad_rows=True)
    table.numbers("horsepower")                 # float32 [rows], NaN where missing or not a number
    table.codes("origin"), table.values("origin")   # int32 [rows] (-1 missing), and the value of each code
    table.texts("comments", rows)               # the raw strings of a text column, for the rows asked

The pass never holds the file in memory: it reads rows through Python's csv
module (quoted fields with delimiters and newlines in them, a UTF-8 byte-order
mark), sniffs the delimiter from the first 64 KB unless it is given, counts
for every column what type inference needs (pipelines/columns.py: missing,
numeric, integer, boolean-like, ISO-date-like values, distinct values, length
and words), and writes every column as float32 numbers and as int32 codes of
its distinct values, and the raw text of the columns that look like free
text, into DATA_DIR/tables/<sha256 of the file>/. A second run of the same
file (a resume, --explain, tuning) finds the cache and reads nothing again.
The file itself is never written to.

`NA`, `NaN`, `N/A`, `null`, `None`, `?` and the empty string are missing,
whatever their case. A row with the wrong number of fields stops the read
with its line number, or is skipped and counted with skip_bad_rows.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core.errors import UsageError

MISSING = frozenset({"", "na", "nan", "n/a", "null", "none", "?"})
BOOLEAN = frozenset({"true", "false", "yes", "no", "t", "f", "y", "n"})
DATE = re.compile(r"^\d{4}[-/]\d{2}[-/]\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
MAX_DISTINCT = 1 << 16  # distinct values kept per column; past this a value's code is OTHER
OTHER = -2  # the code of a value past MAX_DISTINCT (missing: -1)
SAMPLE = 2000  # rows read first, to decide which columns keep their raw text
CHUNK = 50_000  # rows encoded at a time
FORMAT = 1


class Options(NamedTuple):
    delimiter: str | None = None  # None: sniffed from the first 64 KB (comma, tab, semicolon or bar)
    encoding: str = "utf-8"
    skip_bad_rows: bool = False


class Table(NamedTuple):
    """A table read into its cache: header, row count, per-column statistics, and the columns themselves."""

    path: Path
    cache: Path
    header: list  # column names as written in the file (blank ones named column_<n>, repeats suffixed)
    rows: int
    stats: dict  # name -> statistics of the pass (pipelines/columns.py reads them)
    bad_rows: int
    first_bad: list  # (line, what was wrong) of the first few skipped rows
    delimiter: str
    encoding: str

    def numbers(self, name: str) -> np.ndarray:
        return np.memmap(self.cache / f"{self._index(name)}.num", np.float32, "r", shape=(self.rows,))

    def codes(self, name: str) -> np.ndarray:
        return np.memmap(self.cache / f"{self._index(name)}.code", np.int32, "r", shape=(self.rows,))

    def values(self, name: str) -> list[str]:
        """The distinct values of a column, in first-seen order: values(name)[code]."""
        return json.loads((self.cache / f"{self._index(name)}.values.json").read_text())

    def has_texts(self, name: str) -> bool:
        return (self.cache / f"{self._index(name)}.offsets").exists()

    def texts(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """The raw strings of a text column (object array), for `rows` (default: all)."""
        i = self._index(name)
        offsets = np.memmap(self.cache / f"{i}.offsets", np.int64, "r", shape=(self.rows + 1,))
        rows = np.arange(self.rows) if rows is None else np.asarray(rows)
        with open(self.cache / f"{i}.text", "rb") as f:
            data = f.read() if len(rows) > self.rows // 4 else None
            out = []
            for r in rows:
                if data is not None:
                    out.append(data[offsets[r]:offsets[r + 1]].decode("utf-8"))
                else:
                    f.seek(offsets[r])
                    out.append(f.read(int(offsets[r + 1] - offsets[r])).decode("utf-8"))
        return np.array(out, dtype=object)

    def _index(self, name: str) -> int:
        return self.header.index(name)


def fingerprint(path: Path, options: Options) -> str:
    """sha256 of the file's bytes and the reading options: the cache's name, and what a run records."""
    digest = hashlib.sha256(json.dumps(options._asdict(), sort_keys=True).encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(given: str) -> Path:
    path = Path(given)
    if not path.exists():
        raise UsageError(f"--data {given}: no such file")
    if path.is_dir():
        raise UsageError(f"--data {given} is a folder; give a CSV or TSV file")
    if path.stat().st_size == 0:
        raise UsageError(f"--data {given} is empty; give a CSV or TSV file with a header row and rows under it")
    return path


def read(given: str, data_dir: str, options: Options | None = None, progress=print) -> Table:
    """The table in `given`, from its cache, or read once into it (see the module's docstring)."""
    options = options or Options()
    path = check_file(given)
    cache = Path(data_dir) / "tables" / fingerprint(path, options)[:24]
    if (cache / "table.json").exists():
        return _load(path, cache)
    partial = cache.with_name(cache.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _scan(path, partial, options, progress)
        os.replace(partial, cache) if not cache.exists() else shutil.rmtree(partial)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return _load(path, cache)


def _load(path: Path, cache: Path) -> Table:
    record = json.loads((cache / "table.json").read_text())
    return Table(path, cache, record["header"], record["rows"], record["stats"], record["bad_rows"],
                 [tuple(b) for b in record["first_bad"]], record["delimiter"], record["encoding"])


class _Counting(io.RawIOBase):
    """A binary file that counts the bytes read through it (the reading pass's progress)."""

    def __init__(self, raw):
        self.raw, self.count = raw, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n


SNIFF_BYTES = 1 << 16


def sniff_delimiter(path: Path, encoding: str) -> str:
    """The delimiter of a CSV-like file from its first 64 KB: of comma, tab, semicolon and bar (tab first for
    .tsv and .tab), the one under which most records have as many fields as the header, and the header more
    than one. csv.Sniffer is not used: it counts characters per line, so quoted texts with a tab on each of
    their lines made it pick the tab for a comma-separated file."""
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        sample = f.read(SNIFF_BYTES)
    tab_first = path.suffix.lower() in (".tsv", ".tab")
    best, best_share = None, 0.0
    for delimiter in ("\t,;|" if tab_first else ",\t;|"):
        try:
            records = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter) if r]
        except csv.Error:
            continue
        if len(sample) == SNIFF_BYTES:
            records = records[:-1]  # the sample may end inside a record
        if not records or len(records[0]) < 2:
            continue
        share = sum(len(r) == len(records[0]) for r in records) / len(records)
        if share > best_share:
            best, best_share = delimiter, share
    return best or ("\t" if tab_first else ",")


def _names(header: list[str]) -> list[str]:
    names, seen = [], set()
    for i, raw in enumerate(header):
        name = raw.strip() or f"column_{i + 1}"
        base, n = name, 2
        while name in seen:
            name, n = f"{base}_{n}", n + 1
        seen.add(name)
        names.append(name)
    return names


def _scan(path: Path, cache: Path, options: Options, progress) -> None:
    encoding = "utf-8-sig" if options.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else options.encoding
    try:
        delimiter = options.delimiter or sniff_delimiter(path, encoding)
    except LookupError:
        raise UsageError(f"--encoding {options.encoding}: Python knows no such encoding (try utf-8, latin-1, "
                         "cp1252)") from None
    size = path.stat().st_size
    counting = _Counting(open(path, "rb"))
    text = io.TextIOWrapper(io.BufferedReader(counting), encoding=encoding, newline="")
    reader = csv.reader(text, delimiter=delimiter)
    started, shown = time.time(), time.time()
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise UsageError(f"--data {path}: no header row; give a CSV or TSV file with a header row") from None
        names = _names(header)
        columns = [_Column(cache, i) for i in range(len(names))]
        rows, bad, first_bad, sample, chunk = 0, 0, [], [], []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip() and len(names) > 1):
                continue  # a blank line
            if len(row) != len(names):
                if not options.skip_bad_rows:
                    raise UsageError(f"{path}: line {reader.line_num} has {len(row)} fields where the header has "
                                     f"{len(names)}; fix that line, or pass --skip-bad-rows to skip and count "
                                     "such rows")
                bad += 1
                if len(first_bad) < 5:
                    first_bad.append((reader.line_num, f"{len(row)} fields, not {len(names)}"))
                continue
            rows += 1
            if sample is not None:
                sample.append(row)
                if len(sample) == SAMPLE:
                    _choose_texts(columns, sample)
                    chunk, sample = sample, None
                continue
            chunk.append(row)
            if len(chunk) == CHUNK:
                _encode(columns, chunk)
                chunk = []
                if progress and time.time() - shown > 2:
                    shown = time.time()
                    progress(f"  reading {path.name}: {rows:,} rows, {counting.count / max(size, 1):.0%} of "
                             f"{size / 1e6:,.0f} MB, {rows / (shown - started):,.0f} rows/s")
        if sample is not None:
            _choose_texts(columns, sample)
            chunk = sample
        if chunk:
            _encode(columns, chunk)
    except UnicodeDecodeError:
        line, found = _undecodable_line(path, encoding)
        raise UsageError(f"--data {path} is not {options.encoding} text: line {line} has {found}; name the file's "
                         "encoding with --encoding (e.g. --encoding latin-1 or cp1252)") from None
    except csv.Error as err:
        raise UsageError(f"--data {path}: line {reader.line_num}: {err}") from None
    finally:
        text.close()
    if rows == 0:
        raise UsageError(f"--data {path} has a header but no rows under it")
    record = {"format": FORMAT, "header": names, "rows": rows, "bad_rows": bad, "first_bad": first_bad,
              "delimiter": delimiter, "encoding": options.encoding, "stats": {}}
    for name, column in zip(names, columns):
        record["stats"][name] = column.close()
    (cache / "table.json").write_text(json.dumps(record))
    if progress and rows > CHUNK:
        progress(f"  read {path.name}: {rows:,} rows in {time.time() - started:.0f} s")


def _undecodable_line(path: Path, encoding: str) -> tuple[int, str]:
    """(line number, the bytes) of the first line that does not decode: the decoder reads ahead in blocks,
    so where it failed says nothing about the line."""
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as err:
                return number, f"the byte(s) {line[err.start:err.end + 2]!r}"
    return 0, "an undecodable byte"


def _choose_texts(columns: list, sample: list) -> None:
    """Keep the raw text of the columns whose sampled values look like prose (several words, or long)."""
    for i, column in enumerate(columns):
        values = [row[i].strip() for row in sample if row[i].strip().lower() not in MISSING]
        if values:
            words = sum(v.count(" ") + 1 for v in values) / len(values)
            length = sum(len(v) for v in values) / len(values)
            column.keep_texts = words >= 2.5 or length >= 25


class _Column:
    """One column being read: its statistics so far, and its files in the cache."""

    def __init__(self, cache: Path, index: int):
        self.cache, self.index = cache, index
        self.num = open(cache / f"{index}.num", "wb")
        self.code = open(cache / f"{index}.code", "wb")
        self.codes: dict[str, int] = {}
        self.counts: list[int] = []
        self.keep_texts = False
        self.text = self.offsets = None
        self.position = 0
        self.stats = {"missing": 0, "numeric": 0, "integer": 0, "boolean": 0, "date": 0, "other": 0, "length": 0,
                      "words": 0, "min": None, "max": None, "sum": 0.0}

    def close(self) -> dict:
        self.num.close()
        self.code.close()
        if self.text:
            self.text.close()
            self.offsets.write(np.array([self.position], np.int64).tobytes())
            self.offsets.close()
        (self.cache / f"{self.index}.values.json").write_text(json.dumps(list(self.codes)))
        return {**self.stats, "distinct": len(self.codes) + (1 if self.stats["other"] else 0),
                "distinct_capped": bool(self.stats["other"]), "counts": self.counts}

    def add(self, values) -> None:
        """One chunk of the column's raw fields."""
        s = self.stats
        stripped = [v.strip() for v in values]
        present = [v for v in stripped if v.lower() not in MISSING]
        s["missing"] += len(stripped) - len(present)
        numbers = _as_numbers(stripped)
        finite = numbers[np.isfinite(numbers)]
        s["numeric"] += len(finite)
        s["integer"] += int(np.sum(finite == np.round(finite)))
        if len(finite):
            s["min"] = float(finite.min()) if s["min"] is None else min(s["min"], float(finite.min()))
            s["max"] = float(finite.max()) if s["max"] is None else max(s["max"], float(finite.max()))
            s["sum"] += float(finite.sum())
        if len(finite) < len(present):  # some values are not numbers: what else are they?
            s["boolean"] += sum(1 for v in present if v.lower() in BOOLEAN)
            s["date"] += sum(1 for v in present if DATE.match(v))
        s["length"] += sum(len(v) for v in present)
        s["words"] += sum(v.count(" ") + 1 for v in present)
        self.num.write(numbers.astype(np.float32).tobytes())
        self.code.write(np.array([self._code(v) for v in stripped], np.int32).tobytes())
        if self.keep_texts:
            if self.text is None:
                self.text, self.offsets = open(self.cache / f"{self.index}.text", "wb"), open(
                    self.cache / f"{self.index}.offsets", "wb")
            encoded = [("" if v.lower() in MISSING else v).encode("utf-8") for v in stripped]
            starts = self.position + np.concatenate([[0], np.cumsum([len(b) for b in encoded])[:-1]]).astype(np.int64)
            self.offsets.write(starts.tobytes())
            self.text.write(b"".join(encoded))
            self.position += sum(len(b) for b in encoded)

    def _code(self, value: str) -> int:
        if value.lower() in MISSING:
            return -1
        code = self.codes.get(value)
        if code is None:
            if len(self.codes) >= MAX_DISTINCT:
                self.stats["other"] += 1
                return OTHER
            code = self.codes[value] = len(self.codes)
            self.counts.append(0)
        self.counts[code] += 1
        return code


def _as_numbers(stripped: list[str]) -> np.ndarray:
    """float64 of each field: NaN where missing, not a number, or not finite. NumPy parses the whole chunk at
    once when every field is a number or missing; a column of words falls back to one field at a time."""
    cleaned = ["nan" if v.lower() in MISSING else v for v in stripped]
    try:
        numbers = np.array(cleaned, dtype=np.float64)
    except ValueError:
        numbers = np.array([_number(v) for v in cleaned], dtype=np.float64)
    numbers[~np.isfinite(numbers)] = np.nan
    return numbers


def is_number(text: str) -> bool:
    """Whether float() reads the text (what the reading pass counts as a number)."""
    try:
        float(text)
        return True
    except ValueError:
        return False


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _encode(columns: list, rows: list) -> None:
    for column, values in zip(columns, zip(*rows)):
        column.add(values)


def describe_bad_rows(table: Table) -> str:
    """One line about rows skipped for their number of fields, or ''."""
    if not table.bad_rows:
        return ""
    where = ", ".join(f"line {line} ({what})" for line, what in table.first_bad)
    return f"skipped {table.bad_rows:,} row(s) with the wrong number of fields: {where}" + (
        ", ..." if table.bad_rows > len(table.first_bad) else "")


if __name__ == "__main__":  # python -m pipelines.tables FILE: the pass alone, and what it found
    found = read(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/tmp/tables")
    print(json.dumps({"rows": found.rows, "header": found.header, "delimiter": found.delimiter}, indent=2))

"""A user's labelled texts, read in one streaming pass into a cache that training reads from.

    texts = read("tickets.csv", data_dir, Options(text_column="body", label_column="team"))
    texts = read("reviews/", data_dir, Options(suffix=".txt"))   # reviews/<label>/*.txt
    texts.texts(rows)                  # the texts asked for, UTF-8 bytes, from the memory-mapped cache
    texts.labels, texts.classes, texts.split, texts.counts, texts.first_bad

A file is CSV or TSV (the delimiter sniffed unless given; quoted fields with
delimiters and newlines in them) or JSON Lines (one object a line: .jsonl,
.ndjson, or a first line that starts with "{"). A folder holds one folder per
label, or train/validation/test folders of them (pipelines/class_folders.py);
each file whose name ends with the suffix is one text.

Bytes that do not decode in the encoding (UTF-8 unless given; a byte-order
mark is dropped) become U+FFFD, the replacement character: counted, and the
file and line of the first few kept, never an error mid-way. Texts are
stripped of surrounding white space; empty ones, and rows without a label, are
dropped and counted; texts that occur more than once with different labels
are counted (and kept: which label is right is the user's to say). The pass
holds one row at a time and one offset per text: the texts (as UTF-8), their
labels and given splits go to DATA_DIR/texts/<fingerprint>/, so a file larger
than memory reads, and a second run (a resume, --explain, tuning) parses
nothing again (a file's bytes are hashed to find its cache). The user's files
are only read.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import shutil
import sys
import time
from array import array
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from core.errors import UsageError
from pipelines import class_folders, splits as splitting
from pipelines.tables import sniff_delimiter

FORMAT = 1  # of the cache
FIRST_BAD = 5  # places of undecodable bytes kept
JSON_LINES = (".jsonl", ".ndjson")


class Options(NamedTuple):
    text_column: str = "text"
    label_column: str = "label"
    split_column: str = ""
    encoding: str = "utf-8"
    delimiter: str | None = None
    suffix: str = ".txt"
    skip_bad_rows: bool = False


class Texts(NamedTuple):
    source: str
    cache: Path
    layout: str  # "CSV", "TSV", "JSON Lines", "class folders", "train/validation/test folders"
    classes: list  # the labels as written, sorted
    labels: np.ndarray  # int32 index into classes, per text
    split: np.ndarray | None  # int8 per text (pipelines/splits.py codes) from split folders or a split column
    counts: dict  # texts, empty_dropped, unlabelled_dropped, bad_rows_skipped, lines_with_undecodable_bytes, ...
    first_bad: list  # [file, line] of the first lines with bytes that did not decode

    def texts(self, rows: np.ndarray) -> list:
        """The texts of the given rows, as UTF-8 bytes."""
        return Store(self.cache)(rows)


class Store:
    """A cache's texts by row: store(rows) -> their UTF-8 bytes. Text r is bytes offsets[r]:offsets[r + 1] of
    texts.bin. The offsets (8 bytes a text) are memory-mapped; each text is read with pread, not from a memory
    map of texts.bin, whose pages, once read, count as the process's own memory (RSS): an epoch over a file of
    texts larger than memory would look like a process that holds it all."""

    def __init__(self, cache: Path):
        self.offsets = np.load(cache / "offsets.npy", mmap_mode="r")
        self.fd = os.open(cache / "texts.bin", os.O_RDONLY) if self.offsets[-1] else None

    def __call__(self, rows) -> list:
        o = self.offsets
        return [os.pread(self.fd, int(o[r + 1] - o[r]), int(o[r])) if self.fd is not None else b""
                for r in np.asarray(rows, np.int64)]

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)


def read(given: str, data_dir: str, options: Options | None = None, progress=print) -> Texts:
    """The texts in `given` (a file or a folder), from their cache, or read once into it."""
    options = options or Options()
    path = Path(given)
    if not path.exists():
        raise UsageError(f"--data {given}: no such file or folder")
    check_encoding(options.encoding)
    found = None
    if path.is_dir():
        found = class_folders.find(given, "texts", "DIR/positive/*.txt, DIR/negative/*.txt", options.suffix)
        if not found.paths:
            raise UsageError(f"--data {given}: its label folders hold no file ending in {options.suffix!r}; name "
                             "the texts' ending with --suffix")
    elif path.stat().st_size == 0:
        raise UsageError(f"--data {given} is empty")
    cache = Path(data_dir) / "texts" / fingerprint(path, found, options)
    if not (cache / "texts.json").exists():
        partial = cache.with_name(cache.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            _Writer(partial, given, options, progress).read(path, found)
            os.replace(partial, cache) if not cache.exists() else None
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    record = json.loads((cache / "texts.json").read_text())
    split = np.load(cache / "split.npy") if (cache / "split.npy").exists() else None
    return Texts(given, cache, record["layout"], record["classes"], np.load(cache / "labels.npy"), split,
                 record["counts"], record["first_bad"])


def check_encoding(name: str) -> None:
    try:
        codecs.lookup(name)
    except LookupError:
        raise UsageError(f"--encoding {name}: Python knows no such encoding (try utf-8, latin-1, cp1252, "
                         "koi8-r)") from None


def fingerprint(path: Path, found, options: Options) -> str:
    """A file's bytes (sha256) or a folder's files (path, size, time) and the reading options: the cache's name."""
    digest = hashlib.sha256(json.dumps([FORMAT, options._asdict()], sort_keys=True).encode())
    if found is None:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    else:
        for p in found.paths:
            stat = os.stat(p)
            digest.update(f"{p}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


_replaced = [0]  # bytes replaced so far by the "tfsuite-count" error handler (one reader at a time)


def _count_and_replace(err: UnicodeDecodeError):
    _replaced[0] += err.end - err.start
    return "\ufffd", err.end


codecs.register_error("tfsuite-count", _count_and_replace)


class _Writer:
    """One reading pass: decodes, checks and writes every text to the cache folder."""

    def __init__(self, cache: Path, given: str, options: Options, progress):
        self.cache, self.given, self.options, self.progress = cache, given, options, progress
        self.out = open(cache / "texts.bin", "wb")
        self.offsets, self.labels, self.splits, self.hashes = array("q", [0]), array("i"), array("b"), array("Q")
        self.names: dict = {}
        self.counts = {"empty_dropped": 0, "unlabelled_dropped": 0, "bad_rows_skipped": 0,
                       "lines_with_undecodable_bytes": 0, "undecodable_bytes": 0}
        self.first_bad: list = []
        self.started = self.shown = time.time()

    # ---- Reading the lines of one file, decoded, with where bytes did not decode
    def lines(self, path: str) -> Iterator[tuple[int, str]]:
        """(line number, decoded line with its newline) of a file. Raw lines are fed to an incremental decoder,
        so a character across two raw lines (UTF-16) decodes; undecodable bytes count against their raw line."""
        decoder = codecs.getincrementaldecoder(self.options.encoding)(errors="tfsuite-count")
        pending, number = "", 0
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                before = _replaced[0]
                text = pending + decoder.decode(raw)
                if _replaced[0] > before:
                    self.bad_bytes(path, number, _replaced[0] - before)
                if number == 1 and text.startswith("\ufeff"):
                    text = text[1:]  # a byte-order mark
                *complete, pending = text.split("\n")
                for line in complete:
                    yield number, line + "\n"
            pending += decoder.decode(b"", final=True)
        if pending:
            yield number, pending

    def bad_bytes(self, path: str, line: int, count: int) -> None:
        self.counts["lines_with_undecodable_bytes"] += 1
        self.counts["undecodable_bytes"] += count
        if len(self.first_bad) < FIRST_BAD:
            self.first_bad.append([path, line])

    # ---- The layouts
    def read(self, path: Path, found) -> None:
        if found is not None:
            layout = found.layout
            for i, file in enumerate(found.paths):
                text = "".join(line for _, line in self.lines(file))
                self.add(text, found.classes[found.labels[i]],
                         int(found.given_split[i]) if found.given_split is not None else None)
        elif path.suffix.lower() in JSON_LINES or self.first_character(path) == "{":
            layout = "JSON Lines"
            self.json_lines(path)
        else:
            delimiter = self.options.delimiter or sniff_delimiter(path, self.options.encoding)
            layout = "TSV" if delimiter == "\t" else "CSV"
            self.delimited(path, delimiter)
        self.finish(layout)

    def first_character(self, path: Path) -> str:
        for _, line in self.lines(str(path)):
            if line.strip():
                return line.strip()[0]
        return ""

    def columns_missing(self, have: list) -> str:
        o = self.options
        wanted = [("--text-column", o.text_column), ("--label-column", o.label_column)]
        wanted += [("--split-column", o.split_column)] if o.split_column else []
        for flag, name in wanted:
            if name not in have:
                return (f"--data {self.given} has no column {name!r} ({flag}); its columns: "
                        + ", ".join(repr(h) for h in have[:30]) + (" ..." if len(have) > 30 else ""))
        return ""

    def delimited(self, path: Path, delimiter: str) -> None:
        csv.field_size_limit(sys.maxsize)  # a text may be longer than csv's 128 KB default
        lines = self.lines(str(path))
        at = [0]

        def numbered():
            for number, line in lines:
                at[0] = number
                yield line

        reader = csv.reader(numbered(), delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise UsageError(f"--data {self.given} has no header row")
        missing = self.columns_missing(header)
        if missing:
            raise UsageError(missing)
        o = self.options
        text_at, label_at = header.index(o.text_column), header.index(o.label_column)
        split_at = header.index(o.split_column) if o.split_column else None
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if len(row) != len(header):
                self.bad_row(at[0], f"has {len(row)} fields where the header has {len(header)}")
                continue
            self.add(row[text_at], row[label_at].strip(), self.split_word(row[split_at], at[0]) if split_at is not
                     None else None)
            self.show()

    def json_lines(self, path: Path) -> None:
        o = self.options
        checked = False
        for number, line in self.lines(str(path)):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                self.bad_row(number, f"is not JSON ({err.msg})")
                continue
            if not isinstance(row, dict):
                self.bad_row(number, "is not a JSON object")
                continue
            if not checked:
                missing = self.columns_missing(list(row))
                if missing:
                    raise UsageError(missing.replace("column", "key", 1).replace("its columns", "its first object's "
                                                                                  "keys"))
                checked = True
            text, label = row.get(o.text_column), row.get(o.label_column)
            split = self.split_word(str(row.get(o.split_column, "")), number) if o.split_column else None
            self.add(text if isinstance(text, str) else "", _label(label), split)
            self.show()
        if not checked:
            raise UsageError(f"--data {self.given} holds no JSON object")

    def split_word(self, word: str, line: int) -> int:
        split = splitting.WORDS.get(word.strip().lower())
        if split is None:
            raise UsageError(f"--data {self.given} line {line}: --split-column {self.options.split_column!r} has "
                             f"{word!r}; it may hold only train, validation and test")
        return split

    def bad_row(self, line: int, what: str) -> None:
        if not self.options.skip_bad_rows:
            raise UsageError(f"--data {self.given} line {line} {what}; fix it, or pass --skip-bad-rows to skip and "
                             "count such rows")
        self.counts["bad_rows_skipped"] += 1

    # ---- One text
    def add(self, text: str, label: str, split: int | None) -> None:
        text = text.strip()
        if not label:
            self.counts["unlabelled_dropped"] += 1
            return
        if not text:
            self.counts["empty_dropped"] += 1
            return
        encoded = text.encode("utf-8", errors="surrogatepass")
        self.out.write(encoded)
        self.offsets.append(self.offsets[-1] + len(encoded))
        self.labels.append(self.names.setdefault(label, len(self.names)))
        self.splits.append(splitting.LEFT_OUT if split is None else split)
        self.hashes.append(int.from_bytes(hashlib.blake2b(encoded, digest_size=8).digest(), "little"))

    def show(self) -> None:
        if self.progress and time.time() - self.shown > 2:
            self.shown = time.time()
            done = len(self.labels)
            self.progress(f"  reading {self.given}: {done:,} texts, {self.offsets[-1] / 1e6:,.0f} MB "
                          f"({done / (self.shown - self.started):,.0f} texts/s)", flush=True)

    def finish(self, layout: str) -> None:
        self.out.close()
        classes = sorted(self.names)
        recode = np.zeros(max(len(self.names), 1), np.int32)
        for name, code in self.names.items():
            recode[code] = classes.index(name)
        labels = recode[np.frombuffer(self.labels, np.int32)] if self.labels else np.zeros(0, np.int32)
        np.save(self.cache / "labels.npy", labels)
        np.save(self.cache / "offsets.npy", np.frombuffer(self.offsets, np.int64))
        splits = np.frombuffer(self.splits, np.int8)
        if len(splits) and (splits != splitting.LEFT_OUT).any():
            np.save(self.cache / "split.npy", splits)
        self.counts["texts"] = len(labels)
        self.counts["conflicting_duplicates"] = conflicting(np.frombuffer(self.hashes, np.uint64), labels)
        (self.cache / "texts.json").write_text(json.dumps({"format": FORMAT, "layout": layout, "classes": classes,
                                                           "counts": self.counts, "first_bad": self.first_bad}))


def _label(value) -> str:
    """A JSON label as written: strings stripped, true/false, numbers as JSON writes them; null is none."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value)


def conflicting(hashes: np.ndarray, labels: np.ndarray) -> int:
    """How many texts have a copy (the same text) with another label."""
    if len(hashes) < 2:
        return 0
    order = np.lexsort((labels, hashes))
    h, y = hashes[order], labels[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])  # each distinct text's first row
    sizes = np.diff(np.r_[starts, len(h)])
    mixed = np.minimum.reduceat(y, starts) != np.maximum.reduceat(y, starts)
    return int(sizes[mixed].sum())

"""Labelled texts from installed packages, written as a user would have them: for apps.text_classifier's
tests and benchmarks.texts. Nothing here is vendored: Debian's fortune packages and the sentiment app's
tweets mirror are read where they are installed.

    languages(out / "languages.csv")        # fortunes in 7 languages: en, de, es, it, ru, pl, cs
    topics(out / "topics.csv")              # the English fortunes, labelled with their file (about 40, unbalanced)
    tweets(out / "tweets.csv", data_dir)    # the sentiment app's tweets, its split in a column

The fortune files (`sudo apt-get install fortunes fortunes-de fortunes-es fortunes-it fortunes-ru
fortunes-pl fortunes-cs`) hold entries between lines of "%". They are written byte for byte into a quoted
CSV, terminal overstriking ("_\\bX": 88 English entries) included; every file these packages install
is UTF-8 (their .u8 names), so the reader's other encodings are tested on bytes made for the purpose
(tests/test_text_files.py).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FORTUNES = Path("/usr/share/games/fortunes")
LANGUAGES = ("en", "de", "es", "it", "ru", "pl", "cs")


def fortune_files(language: str) -> list:
    """A language's fortune files: English at the top (the links there lead to Italian ones), others in a folder."""
    folder = FORTUNES if language == "en" else FORTUNES / language
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir())
            if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8") and "." not in p.name[:1]]


def entries(path: Path) -> list:
    """A fortune file's entries, bytes as they are, without the "%" lines between them."""
    raw = path.read_bytes().replace(b"\r\n", b"\n")
    return [e.strip(b"\n") for e in (b"\n" + raw + b"\n").split(b"\n%\n") if e.strip()]


HEADER = b"text,label\n"


def csv_row(text: bytes, label: str) -> bytes:
    """One row of the quoted CSV "text,label", the text's bytes unchanged."""
    return b'"' + text.replace(b'"', b'""') + b'",' + label.encode() + b"\n"


def _write(out: Path, rows: list) -> Path:
    """rows: (text bytes, label) -> a quoted CSV "text,label"."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        f.write(HEADER)
        for text, label in rows:
            f.write(csv_row(text, label))
    return out


def _sample(rows: list, per_label: int | None, seed: int) -> list:
    if per_label is None:
        return rows
    rng = np.random.default_rng(seed)
    by_label: dict = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    kept = []
    for label in sorted(by_label):
        group = by_label[label]
        kept += [group[i] for i in sorted(rng.permutation(len(group))[:per_label])]
    return kept


def languages(out: Path, per_label: int | None = None, seed: int = 0) -> Path:
    """Every fortune of the seven languages (about 89,000), labelled with its language; per_label: at most
    that many of each, drawn with the seed."""
    return _write(out, _sample(language_rows(), per_label, seed))


def language_rows() -> list:
    """(text bytes, language) of every fortune of the seven languages."""
    return [(text, lang) for lang in LANGUAGES for path in fortune_files(lang) for text in entries(path)]


def topics(out: Path, per_label: int | None = None, seed: int = 0) -> Path:
    """The English fortunes (about 15,000), each labelled with the file it is in (about 40 topics, from a few
    dozen entries to thousands)."""
    rows = [(text, path.name) for path in fortune_files("en") for text in entries(path)]
    return _write(out, _sample(rows, per_label, seed))


def tweets(out: Path, data_dir: str) -> Path:
    """The sentiment app's tweets (pipelines/tweets.py: cleaned and split as that app has them) as a CSV with
    a split column: text, label, split."""
    from pipelines import tweets as tweet_data

    corpus = tweet_data.load(data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "split"])
        for split in ("train", "validation", "test"):
            texts, labels = corpus[split]
            writer.writerows((text, tweet_data.CLASS_NAMES[int(label)], split) for text, label in zip(texts, labels))
    return out

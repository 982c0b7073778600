"""pipelines/text_files.py: a user's labelled texts in every layout and encoding, read once into a cache,
with what was dropped, replaced and conflicting counted, and bad input refused in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import UsageError
from pipelines import splits as splitting, text_files
from pipelines.text_files import Options, read

from conftest import needs_fortunes


def _read(path, tmp_path, **options):
    return read(str(path), str(tmp_path / "cache"), Options(**options), progress=None)


def _all(texts):
    return [t.decode() for t in texts.texts(np.arange(texts.counts["texts"]))]


def test_csv_quoted_fields_a_bom_and_what_is_dropped(tmp_path):
    path = tmp_path / "tickets.csv"
    path.write_bytes("\ufeffid,body,team\n"
                     '1,"Printer on floor 2, again",hardware\n'
                     '2,"Two lines:\nthe VPN drops",network\n'
                     "3,   ,network\n"  # empty: dropped
                     "4,No team given,\n"  # no label: dropped
                     '5,"He said ""reboot""",hardware\n'
                     "\n"
                     "6,Printer on floor 2,network\n".encode("utf-8"))
    texts = _read(path, tmp_path, text_column="body", label_column="team")
    assert texts.layout == "CSV" and texts.classes == ["hardware", "network"]
    assert _all(texts) == ["Printer on floor 2, again", "Two lines:\nthe VPN drops", 'He said "reboot"',
                           "Printer on floor 2"]
    assert texts.labels.tolist() == [0, 1, 0, 1] and texts.split is None
    assert texts.counts["empty_dropped"] == 1 and texts.counts["unlabelled_dropped"] == 1
    assert texts.counts["conflicting_duplicates"] == 0 and texts.counts["lines_with_undecodable_bytes"] == 0


def test_tsv_json_lines_and_a_split_column(tmp_path):
    tsv = tmp_path / "reviews.tsv"
    tsv.write_text("text\tlabel\tsplit\ngood\tpos\ttrain\nbad\tneg\tvalidation\nfine\tpos\ttest\n")
    texts = _read(tsv, tmp_path, split_column="split")
    assert texts.layout == "TSV" and texts.split.tolist() == [splitting.TRAIN, splitting.VALIDATION, splitting.TEST]
    lines = tmp_path / "messages.jsonl"
    rows = [{"text": "Привет, как дела?", "label": "ru"}, {"text": "こんにちは", "label": "ja"},
            {"text": "ok", "label": 3}, {"text": None, "label": "ru"}, {"text": "yes", "label": True}]
    lines.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    texts = _read(lines, tmp_path)
    assert texts.layout == "JSON Lines" and _all(texts) == ["Привет, как дела?", "こんにちは", "ok", "yes"]
    assert texts.classes == ["3", "ja", "ru", "true"] and texts.counts["empty_dropped"] == 1


@pytest.mark.parametrize("delimiter, suffix", [(",", ".csv"), (";", ".csv"), ("\t", ".txt"), ("|", ".csv")])
def test_the_delimiter_is_the_one_the_header_and_rows_agree_on(tmp_path, delimiter, suffix):
    """Quoted texts whose every line holds a tab and a semicolon (a fortune's attribution line) misled
    csv.Sniffer into the tab; the header and the records decide."""
    quote = '"'
    rows = [f'{quote}A critic is a bundle of biases;\n\t\t-- Whitney Balliett; 1970{quote}{delimiter}art'
            for _ in range(30)] + [f"{quote}Plain, short{quote}{delimiter}misc"] * 30
    path = tmp_path / f"fortunes{suffix}"
    path.write_text(f"text{delimiter}label\n" + "\n".join(rows) + "\n")
    texts = _read(path, tmp_path)
    assert texts.classes == ["art", "misc"] and texts.counts["texts"] == 60
    assert _all(texts)[0] == "A critic is a bundle of biases;\n\t\t-- Whitney Balliett; 1970"


@needs_fortunes
def test_a_csv_of_fortunes_with_tabbed_attributions_reads_as_a_csv(tmp_path):
    """The English fortunes by topic: csv.Sniffer took this comma-separated file for tab-separated (its quoted
    texts carry tab-indented attribution lines) and the columns were not found."""
    from benchmarks import text_sets

    texts = _read(text_sets.topics(tmp_path / "topics.csv", per_label=40), tmp_path)
    assert texts.layout == "CSV" and len(texts.classes) == len(text_sets.fortune_files("en"))


def test_folders_of_labels_with_a_suffix_and_split_folders(tmp_path):
    for split in ("train", "test"):
        for label, words in (("pos", "great"), ("neg", "awful")):
            folder = tmp_path / "reviews" / split / label
            folder.mkdir(parents=True)
            (folder / "1.txt").write_text(f"{words} film\n")
            (folder / "2.txt").write_text(f"{words} plot\n")
            (folder / "notes.md").write_text("not a review")
            (folder / ".hidden.txt").write_text("hidden")
    texts = _read(tmp_path / "reviews", tmp_path)
    assert texts.layout == "train/test folders" and texts.classes == ["neg", "pos"] and len(texts.labels) == 8
    assert _all(texts)[:2] == ["awful film", "awful plot"]  # whole files, stripped
    assert texts.split.tolist() == [splitting.TRAIN] * 4 + [splitting.TEST] * 4
    markdown = _read(tmp_path / "reviews", tmp_path, suffix=".md")
    assert _all(markdown) == ["not a review"] * 4


def test_undecodable_bytes_are_replaced_and_counted_with_their_lines(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes("text,label\n".encode() + "café,fr\n".encode("latin-1") + "naïve,en\n".encode("utf-8")
                     + b"\xff\xfe broken,en\n")
    texts = _read(path, tmp_path)
    assert _all(texts) == ["caf\ufffd", "naïve", "\ufffd\ufffd broken"]
    assert texts.counts["lines_with_undecodable_bytes"] == 2 and texts.counts["undecodable_bytes"] == 3
    assert texts.first_bad == [[str(path), 2], [str(path), 4]]
    assert _all(_read(path, tmp_path, encoding="latin-1"))[0] == "café"  # the right encoding: nothing replaced
    koi8 = tmp_path / "koi8.csv"
    koi8.write_bytes("text,label\nмир,ru\n".encode("koi8-r"))
    assert _all(_read(koi8, tmp_path, encoding="koi8-r")) == ["мир"]
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes('text,label\n"Ёж\nи",ru\n'.encode("utf-16"))  # "\n" is b"\n\x00": raw lines split a character
    assert _all(_read(utf16, tmp_path, encoding="utf-16")) == ["Ёж\nи"]


def test_texts_with_conflicting_labels_are_counted(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("text,label\nsame,a\nsame,b\nsame,a\nother,a\nother,a\nthird,b\n")
    assert _read(path, tmp_path).counts["conflicting_duplicates"] == 3  # the three copies of "same"
    assert text_files.conflicting(np.array([5, 5], np.uint64), np.array([1, 1])) == 0


def test_the_cache_is_read_back_and_a_changed_file_is_read_again(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nx,a\ny,b\n")
    first = _read(path, tmp_path)
    again = _read(path, tmp_path)
    assert again.cache == first.cache and _all(again) == ["x", "y"]
    path.write_text("text,label\nx,a\nz,b\n")
    assert _read(path, tmp_path).cache != first.cache and _all(_read(path, tmp_path)) == ["x", "z"]
    assert not list((tmp_path / "cache" / "texts").glob("*partial*"))


@pytest.mark.parametrize("content,options,match", [
    (None, {}, "no such file or folder"),
    ("", {}, "is empty"),
    ("body,team\nx,a\n", {}, r"has no column 'text' \(--text-column\); its columns: 'body', 'team'"),
    ("text,team\nx,a\n", {}, r"no column 'label' \(--label-column\)"),
    ("text,label\nx,a\ny,b,c\n", {}, "line 3 has 3 fields where the header has 2; fix it, or pass --skip-bad-rows"),
    ('{"text": "x", "label": "a"}\nnot json\n', {}, "line 2 is not JSON"),
    ('{"body": "x", "label": "a"}\n', {}, r"has no key 'text' \(--text-column\); its first object's keys: 'body'"),
    ("text,label,s\nx,a,later\n", {"split_column": "s"}, "line 2: --split-column 's' has 'later'"),
    ("text,label\nx,a\n", {"encoding": "klingon"}, "--encoding klingon: Python knows no such encoding"),
])
def test_bad_input_is_one_line(tmp_path, content, options, match):
    path = tmp_path / ("data.jsonl" if content and content.startswith("{") else "data.csv")
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=match):
        _read(path, tmp_path, **options)
    assert not (tmp_path / "cache" / "texts").exists() or not list((tmp_path / "cache" / "texts").iterdir())


def test_bad_rows_can_be_skipped_and_counted(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nx,a\ny,b,c\nz,b\n")
    texts = _read(path, tmp_path, skip_bad_rows=True)
    assert _all(texts) == ["x", "z"] and texts.counts["bad_rows_skipped"] == 1


def test_a_folder_without_label_folders_or_texts_is_refused(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("x")
    with pytest.raises(UsageError, match="has no class folders: put each class's texts in a folder of its own"):
        _read(tmp_path / "flat", tmp_path)
    for label in ("a", "b"):
        (tmp_path / "wrong" / label).mkdir(parents=True)
        (tmp_path / "wrong" / label / "x.text").write_text("x")
    with pytest.raises(UsageError, match=r"hold no file ending in '.txt'; name the texts' ending with --suffix"):
        _read(tmp_path / "wrong", tmp_path)

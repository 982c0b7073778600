"""apps.text_classifier: a user's labelled texts through everything the suite does.

The texts are real (benchmarks/text_sets.py): fortunes in seven languages and the English ones by topic,
from Debian's fortune packages, written as a CSV byte for byte (terminal overstriking included). The
default tier reads every layout, refuses bad input, trains the languages once (shared by the serving
and --explain tests) and serves raw strings; the long tier resumes bit-identically and trains on two
replicas and on the topics' many unbalanced labels.
"""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from conftest import cli, error_lines, in_process, needs_fortunes

from benchmarks import text_sets

pytestmark = needs_fortunes


@pytest.fixture(scope="module")
def languages(tmp_path_factory):
    return text_sets.languages(tmp_path_factory.mktemp("texts") / "languages.csv", per_label=60)


@pytest.fixture(scope="module")
def trained(languages, tmp_path_factory):
    """The languages trained briefly, exported (LiteRT files and TensorBoard pictures: the long tier's): (work
    folder, stdout)."""
    work = tmp_path_factory.mktemp("trained")
    out = in_process("text_classifier", "--data", str(languages), "--epochs", "12", "--logdir", str(work / "runs"),
                     "--export-dir", str(work / "export"), "--data-dir", str(work / "cache"), "--litert", "none",
                     "--pictures", "none")
    return work, out


def test_the_languages_train_and_the_export_takes_raw_strings(trained):
    work, out = trained
    assert "languages.csv: 420 texts (CSV)" in out and "7 labels; split: stratified by label" in out
    finished = json.loads(next((work / "runs" / "text_classifier").glob("bag-*/FINISHED.json")).read_text())
    assert finished["test_accuracy"] > 0.6 and 0 < finished["details"]["test_macro_f1"] <= 1
    assert "Export:" in out and "(serving_default: text string[None] -> probabilities, class, class_id)" in out
    run_dir = next((work / "runs" / "text_classifier").glob("bag-*"))
    split = json.loads((run_dir / "split.json").read_text())
    assert split["counts"] == {"train": 294, "validation": 63, "test": 63, "left_out": 0}


def test_the_bag_takes_sparse_tf_idf_and_answers_the_same_on_dense(trained):
    """The memory of a large file rests on this: batches of the n-grams present, not of the whole vocabulary."""
    import keras
    import tensorflow as tf

    import apps.text_layers  # noqa: F401  (registers the bag's layers for loading)

    work, _ = trained
    model = keras.models.load_model(next((work / "runs" / "text_classifier").glob("bag-*/model.keras")))
    assert [t.sparse for t in model.inputs] == [True, True], model.inputs
    width = {t.name: int(t.shape[-1]) for t in model.inputs}
    sparse = {"words": tf.sparse.from_dense(tf.one_hot([[3, 7], [0, 1]], width["words"]).numpy().sum(1)),
              "chars": tf.sparse.from_dense(tf.one_hot([5, 2], width["chars"]))}
    dense = {k: tf.sparse.to_dense(v) for k, v in sparse.items()}
    np.testing.assert_allclose(model(sparse).numpy(), model(dense).numpy(), rtol=1e-5, atol=1e-6)


def test_the_benchmark_peers_get_the_apps_own_rows_and_scores(trained, languages):
    """benchmarks/texts.py: the peers fit and score on the rows the app trained and tested on, and macro-F1
    counts a label absent from the test rows and never predicted as 0, as the app's does."""
    from benchmarks import texts

    work, _ = trained
    run_dir = next((work / "runs" / "text_classifier").glob("bag-*"))
    assignment = np.load(run_dir / "split.npy")
    found = texts.split_texts(languages, [], 42, str(work / "cache"))
    for code in (0, 1, 2):  # train, validation, test
        assert np.array_equal(found["rows"][code], np.flatnonzero(assignment == code))
        assert len(found[code][0]) == len(found[code][1]) == len(found["rows"][code])
    assert found["classes"] == 7 and all(isinstance(t, str) and t for t in found[0][0])
    assert texts.scores([0, 0, 1], [0, 0, 1], 3) == (1.0, 2 / 3)
    assert texts.fasttext_line("He said: (Hi!)\n\t-- Me") == "he said: ( hi ! ) -- me"


def test_tf_serving_rows_and_columns_with_an_empty_string_and_unseen_characters(trained):
    from deployment.rest import SessionModel

    work, _ = trained
    model = SessionModel(work / "export" / "languages" / "1")
    texts = ["Der Hund schläft im Garten.", "Собака спит в саду.", "", "☃☃☃ 🦜"]
    rows = model.predict({"instances": texts})["predictions"]
    columns = model.predict({"inputs": {"text": texts}})["outputs"]
    assert [r["class"] for r in rows] == columns["class"] and rows[0]["class"] == "de" and rows[1]["class"] == "ru"
    assert all(r["class"] in text_sets.LANGUAGES for r in rows)  # "" and unseen characters: an answer
    np.testing.assert_allclose([sum(r["probabilities"]) for r in rows], 1.0, atol=1e-5)
    assert [r["class_id"] for r in rows] == [sorted(text_sets.LANGUAGES).index(r["class"]) for r in rows]


def test_explain_names_the_words_and_refuses_an_empty_text(trained):
    work, _ = trained
    out = in_process("text_classifier", "--explain", "Il gatto dorme sul divano.", "--name", "languages",
                     "--export-dir", str(work / "export"), "--logdir", str(work / "runs"))
    assert "prediction:   it" in out and "the words it rests on (occlusion)" in out
    result = cli("apps.text_classifier", "--explain", "  ", "--name", "languages", "--export-dir",
                 str(work / "export"), "--logdir", str(work / "runs"), check=False, timeout=120)
    assert result.returncode == 2 and error_lines(result.stderr) == ["error: --explain needs a non-empty text"]


def _main(argv):
    from apps import text_classifier
    from cli.main import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(text_classifier, argv)
    return code, error_lines(err.getvalue()), out.getvalue()


@pytest.mark.parametrize("case,match", [
    ("missing", "no such file or folder"),
    ("columns", "has no column 'body' (--text-column); its columns: 'text', 'label'"),
    ("one_label", "every text has the label 'en'; a classifier needs at least two labels"),
    ("all_empty", "no text left after dropping 3 empty text(s) and 0 without a label"),
    ("flat_folder", "has no class folders: put each class's texts in a folder of its own"),
    ("unknown_label", "has the label 'fr', which --data"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, case, match):
    data, extra = tmp_path / "data.csv", []
    if case == "columns":
        data.write_text("text,label\nhello,en\nhallo,de\n")
        extra = ["--text-column", "body"]
    elif case == "one_label":
        data.write_text("text,label\nhello,en\nhi,en\n")
    elif case == "all_empty":
        data.write_text('text,label\n"",en\n"  ",de\n"\n",de\n')
    elif case == "flat_folder":
        data = tmp_path / "folder"
        data.mkdir()
        (data / "a.txt").write_text("x")
    elif case == "unknown_label":
        data.write_text("text,label\nhello,en\nhallo,de\n")
        (tmp_path / "test.csv").write_text("text,label\nbonjour,fr\n")
        extra = ["--test-data", str(tmp_path / "test.csv")]
    before = sorted(tmp_path.rglob("*"))
    code, lines, _ = _main(["--data", str(data), *extra, "--logdir", str(tmp_path / "runs"), "--export-dir",
                            str(tmp_path / "export"), "--data-dir", str(tmp_path / "cache")])
    assert code == 2 and len(lines) == 1 and match in lines[0], lines
    assert not (tmp_path / "runs").exists() and not (tmp_path / "export").exists()
    assert sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts) == before  # the user's files untouched


def test_a_folder_of_label_folders_with_given_splits_trains(tmp_path):
    """reviews/{train,test}/<label>/*.txt: the splits as given, validation drawn from train."""
    for split, count in (("train", 10), ("test", 4)):
        for label, words in (("pos", "a great lovely film"), ("neg", "an awful boring film")):
            folder = tmp_path / "reviews" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.txt").write_text(f"{words} number {i}\n")
    out = in_process("text_classifier", "--data", str(tmp_path / "reviews"), "--epochs", "2", "--logdir",
                     str(tmp_path / "runs"), "--export-dir", str(tmp_path / "export"), "--data-dir",
                     str(tmp_path / "cache"), "--litert", "none", "--pictures", "none")
    assert "28 texts (train/test folders)" in out and "validation drawn from train" in out
    assert "warning: 2 label(s) have fewer than 10 training texts" in out
    assert (tmp_path / "export" / "reviews" / "1" / "saved_model.pb").exists()


@pytest.mark.long
def test_a_killed_run_resumes_and_ends_bit_identical(languages, tmp_path):
    from conftest import backup_steps, kill_when, rows

    args = ["apps.text_classifier", "--data", str(languages), "--epochs", "4", "--batch-size", "32",
            "--deterministic", "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "export"),
            "--data-dir", str(tmp_path / "cache"), "--litert", "none", "--pictures", "none"]
    run_dirs = lambda: list((tmp_path / "runs" / "text_classifier").glob("bag-*"))  # noqa: E731

    # 294 training texts: 10 steps an epoch. Just after its end, then inside epoch 3
    kill_when(args, run_dirs, lambda d: 10 in backup_steps(d / "backup"), "the end of epoch 1")
    kill_when(args, run_dirs, lambda d: any(r["global_step"] >= 24 for r in rows(d)), "step 24")
    final = cli(*args)
    assert "resuming" in final.stdout
    reference = cli(*[a if a != str(tmp_path / "runs") else str(tmp_path / "reference") for a in args])
    assert [line for line in reference.stdout.splitlines() if line.startswith("Test set:")][0] in final.stdout
    ours = json.loads((run_dirs()[0] / "FINISHED.json").read_text())
    theirs = json.loads((next((tmp_path / "reference" / "text_classifier").glob("bag-*")) / "FINISHED.json")
                        .read_text())
    assert ours["weights_sha256"] == theirs["weights_sha256"]


@pytest.mark.long
def test_many_unbalanced_topics_on_two_replicas_with_per_class_figures(tmp_path):
    """The English fortunes by file: about 40 labels from a few dozen texts to thousands, as JSON Lines,
    trained on two replicas; TensorBoard gets the confusion matrix (the most frequent 30) and every class's
    F1, and macro-F1 stands beside accuracy."""
    from test_cli import _tags

    csv_file = text_sets.topics(tmp_path / "topics.csv", per_label=40)
    import csv as csv_module

    with open(csv_file, newline="", encoding="utf-8", errors="replace") as f, \
            open(tmp_path / "topics.jsonl", "w", encoding="utf-8") as out:
        for row in csv_module.DictReader(f):
            out.write(json.dumps({"fortune": row["text"], "file": row["label"]}, ensure_ascii=False) + "\n")
    result = cli("apps.text_classifier", "--data", str(tmp_path / "topics.jsonl"), "--text-column", "fortune",
                 "--label-column", "file", "--epochs", "3", "--strategy", "mirrored", "--cpu-devices", "2",
                 "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "export"), "--data-dir",
                 str(tmp_path / "cache"), "--litert", "float32")
    assert "over 2 replica(s) (MirroredStrategy)" in result.stdout and "(JSON Lines)" in result.stdout
    labels = len(text_sets.fortune_files("en"))
    assert f"{labels} labels; split: stratified by label" in result.stdout
    assert "fewer than 10 training texts" in result.stdout  # the smallest files have under 14 fortunes
    run_dir = next((tmp_path / "runs" / "text_classifier").glob("bag-*"))
    assert {"confusion_matrix", "per_class/table", "explanations/image"} <= _tags(run_dir / "test")
    finished = json.loads((run_dir / "FINISHED.json").read_text())
    assert 0 < finished["details"]["test_macro_f1"] <= finished["test_accuracy"] + 0.2
    assert (tmp_path / "export" / "topics" / "1" / "litert" / "model_float32.tflite").exists()

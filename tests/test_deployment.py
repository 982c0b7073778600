"""LiteRT files and the publishing gate (deployment/gate.py), on real MNIST models:
a worse version is held back outside TF Serving's base path, a better one is
published, --publish always overrides, nothing published is ever touched, and
a compressed file past the tolerance is not written."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from apps import images, mnist
from conftest import ROOT
from core.errors import UsageError
from test_export import _tree_digest
from deployment import gate as deployment, export, scores
from cli.parser import parse_config

SERVING = mnist.serving(None, None)


@pytest.fixture(scope="module")
def models(trained_mlp):
    """(good, bad, config): the trained seed MLP (conftest) and the same MLP untrained."""
    good, config = trained_mlp
    bad, kwargs = images.build_mlp(config, None, 100)
    bad.compile(**kwargs)
    return good, bad, config


@pytest.fixture(scope="module")
def test_set(mnist_arrays):
    return export.TestSet(mnist.serving_inputs(mnist_arrays["x_test"][:600]), mnist_arrays["y_test"][:600],
                          mnist.serving_inputs(mnist_arrays["x_train"][:50]))


def _export(model, config, base, test_set, **flags):
    config = parse_config(mnist, ["--model", "mlp", *sum(([f"--{k}", v] for k, v in flags.items()), [])])
    return export.export_version(SERVING, model, config, base, {k: v[:4] for k, v in test_set.inputs.items()},
                                 test=test_set)


def _versions(base):
    return sorted(p.name for p in base.iterdir())


def test_the_gate_holds_back_a_worse_version_and_publishes_a_better_one(models, test_set, tmp_path):
    good, bad, config = models
    base = tmp_path / "sm" / "mnist"
    first = _export(good, config, base, test_set, litert="none")
    assert first.path == base / "1" and first.held is None  # a first version is not compared
    before = _tree_digest(first.path)

    worse = _export(bad, config, base, test_set, litert="none")
    assert worse.path is None and worse.held.parent == tmp_path / "sm" / "held" / "mnist"
    assert "loses" in worse.lines[-1] and "to version 1 of mnist on the same test set" in worse.lines[-1]
    assert "--publish always" in worse.lines[-1]
    assert (worse.held / "saved_model.pb").exists() and (worse.held / "NOT_PUBLISHED.txt").exists()
    assert _versions(base) == ["1"] and _tree_digest(first.path) == before  # TF Serving's base: versions only

    forced = _export(bad, config, base, test_set, litert="none", publish="always")
    assert forced.path == base / "2" and forced.held is None

    # Compared with the newest version (the forced bad one): the good model is published again.
    better = _export(good, config, base, test_set, litert="none")
    assert better.path == base / "3"
    evaluation = json.loads((better.path / "evaluation.json").read_text())
    assert evaluation["previous"]["path"] == str(base / "2")
    assert evaluation["savedmodel"]["score"] > evaluation["previous"]["score"] + 0.5
    assert _tree_digest(first.path) == before

    # A held version can still be published, as the next number, by hand.
    published = subprocess.run([sys.executable, "-m", "cli.publish", str(worse.held)],
                               capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert published.returncode == 0 and published.stdout.strip().endswith(str(base / "4"))
    assert not worse.held.exists() and not (base / "4" / "NOT_PUBLISHED.txt").exists()
    with pytest.raises(UsageError, match="is not a held-back version"):
        export.publish_held(str(base / "1"))
    assert _tree_digest(first.path) == before


def test_litert_files_are_scored_and_a_lossy_one_is_not_written(models, test_set, tmp_path, monkeypatch):
    good, _, config = models
    base = tmp_path / "mnist"
    exported = _export(good, config, base, test_set)
    evaluation = json.loads((exported.path / "evaluation.json").read_text())
    reference = evaluation["savedmodel"]["score"]
    for variant in ("float32", "dynamic_range", "float16", "int8"):
        entry = evaluation["litert"][variant]
        assert (exported.path / "litert" / entry["file"]).exists() == entry["kept"]
        assert entry["p50_ms"] <= entry["p99_ms"] and entry["bytes"] > 0
        assert entry["kept"] == scores.within("accuracy", reference, entry["score"])
    assert evaluation["litert"]["float32"]["max_difference"] < 1e-4
    sizes = {v: e["bytes"] for v, e in evaluation["litert"].items()}
    assert sizes["dynamic_range"] < sizes["float32"] / 3 and sizes["float16"] < sizes["float32"] / 1.8

    # --litert dynamic_range: that file alone; float32 is made for the check and dropped.
    one = _export(good, config, base, test_set, litert="dynamic_range", publish="always")
    assert sorted(p.name for p in (one.path / "litert").glob("*.tflite")) == ["model_dynamic_range.tflite"]
    checked = json.loads((one.path / "evaluation.json").read_text())["litert"]
    assert set(checked) == {"float32", "dynamic_range"} and checked["float32"]["max_difference"] < 1e-4

    # A tolerance no compressed file can meet: each is refused in one line that says by how much.
    monkeypatch.setitem(scores.KINDS, "accuracy", scores.Kind(True, -0.5, False))
    report = {"metric": ["accuracy", "probabilities"], "savedmodel": {"score": reference},
              "litert": json.loads(json.dumps(evaluation["litert"]))}
    staging = tmp_path / "staging"
    (staging / "litert").mkdir(parents=True)
    for entry in report["litert"].values():
        (staging / "litert" / entry["file"]).write_bytes(b"x")
    lines = deployment.keep_litert(staging, {"metric": report["metric"], "keep": list(report["litert"])}, report)
    assert len(lines) == 4 and all("not written: it loses" in line and "points of accuracy" in line for line in lines)
    assert not list((staging / "litert").glob("*.tflite"))


def test_a_float_file_that_disagrees_drops_every_litert_file(tmp_path):
    """preprocessing.json that does not reproduce the SavedModel ships nothing."""
    staging = tmp_path / "staging"
    (staging / "litert").mkdir(parents=True)
    (staging / "litert" / "model_float32.tflite").write_bytes(b"x")
    report = {"savedmodel": {"score": 0.9},
              "litert": {"float32": {"file": "model_float32.tflite", "score": 0.9, "max_difference": 0.2}}}
    lines = deployment.keep_litert(staging, {"metric": ["accuracy", "probabilities"], "keep": ["float32"]}, report)
    assert len(lines) == 1 and "does not reproduce the SavedModel" in lines[0]
    assert not (staging / "litert").exists()


def test_the_gate_refuses_to_compare_with_a_version_of_other_inputs(models, test_set, tmp_path):
    good, _, config = models
    base = tmp_path / "mnist"
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    other.export(str(base / "1"), verbose=False)
    held = _export(good, config, base, test_set, litert="none")
    assert held.path is None and "cannot be scored on this test set" in held.lines[-1]
    assert _versions(base) == ["1"]
    assert _export(good, config, base, test_set, litert="none", publish="always").path == base / "2"


def test_held_back_runs_exit_3_and_say_why(monkeypatch, capsys):
    from cli import main

    def held():
        raise main.HeldBack("not published: it loses 1.00 points of accuracy to version 1")

    assert main.guarded(held, "") == main.HELD_EXIT == 3
    assert "not published" in capsys.readouterr().err
    assert scores.loss("mae", 2.0, 2.1) == pytest.approx(0.05) and not scores.within("mae", 2.0, 2.1)
    assert scores.within("accuracy", 0.99, 0.988) and not scores.within("accuracy", 0.99, 0.986)


def test_a_converter_crash_loses_only_that_file(tmp_path):
    """TF 2.21's converter segfaults calibrating a full-integer LSTM: the check process is
    rerun without that variant, and the other files are made and scored as usual."""
    import tensorflow as tf

    from deployment.export import Serving
    from deployment.litert import LiteRT

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,), dtype="int64"), keras.layers.Embedding(20, 8, mask_zero=True),
                              keras.layers.LSTM(16), keras.layers.Dense(3, activation="softmax")])

    def serve(model, ids):
        return {"probabilities": model(ids, training=False)}

    def core(model):
        return (lambda ids: serve(model, ids)), {"ids": tf.TensorSpec([1, 12], tf.int64)}  # static: an LSTM converts so

    serving = Serving("lstm", {"ids": tf.TensorSpec([None, 12], tf.int64)}, ("probabilities",), serve,
                      metric=("accuracy", "probabilities"), litert=LiteRT(core))  # every variant, int8 included
    ids = np.random.default_rng(0).integers(1, 20, (40, 12))
    test = export.TestSet({"ids": ids}, np.zeros(40, np.int64), {"ids": ids[:10]})
    config = parse_config(mnist, ["--model", "mlp"])
    exported = export.export_version(serving, model, config, tmp_path / "lstm", {"ids": ids[:4]}, test=test)
    evaluation = json.loads((exported.path / "evaluation.json").read_text())
    assert evaluation["litert"]["int8"] == {"error": "the converter crashed (SIGSEGV) converting this model",
                                            "kept": False}
    assert any("LiteRT int8: not written: the converter crashed" in line for line in exported.lines)
    assert [v for v, e in evaluation["litert"].items() if e["kept"]] == ["float32", "dynamic_range", "float16"]


def test_a_worse_run_from_the_command_line_is_held_back_with_exit_3(models, test_set, tmp_path):
    """The real command: trained, checked and recorded as finished, but not published over a better version."""
    from conftest import cli

    good, _, config = models
    base = tmp_path / "sm" / "mnist"
    assert _export(good, config, base, test_set, litert="none").path == base / "1"
    before = _tree_digest(base / "1")
    result = cli("apps.mnist", "--smoke", "--model", "mlp", "--train-examples", "64", "--data-source", "mirror",
                 "--litert", "none", "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"),
                 check=False)
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert result.returncode == 3 and last.startswith("not published: it loses") and "to version 1 of mnist" in last
    assert "Held back:" in result.stdout and "python -m cli.publish" in result.stdout
    finished = json.loads(next((tmp_path / "runs" / "mnist").glob("*/FINISHED.json")).read_text())
    assert finished["export"] == "" and finished["held"].startswith(str(tmp_path / "sm" / "held" / "mnist"))
    assert _versions(base) == ["1"] and _tree_digest(base / "1") == before

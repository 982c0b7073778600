"""apps.regression, apps.sentiment and apps.charlm end to end: a smoke epoch under the default strategy
and under a 2-replica MirroredStrategy on logical CPUs (sentiment: a 2-worker cluster), TensorBoard read back, the
export served by a fresh process; S3's line against least squares; bad input."""
import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, TensorBoard, cli, error_lines, in_process, start_cluster
from test_cli import _tags

# Under mirrored2 the export is checked as always but writes no LiteRT files: the default runs cover those.
STRATEGIES = {"default": [], "mirrored2": ["--strategy", "mirrored", "--cpu-devices", "2", "--litert", "none"]}

def _serve(export):
    """The export's own REST sample request as TF Serving loads the model (deployment/rest.py: the
    session loader): in a fresh process in the row format, here in the columnar one; checks its
    LiteRT files and bad requests."""
    from deployment.rest import SessionModel

    served = subprocess.run([sys.executable, "-m", "cli.rest", str(export), str(export / "sample_request.json")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert served.returncode == 0, served.stderr[-2000:]
    predictions = json.loads(served.stdout.strip().splitlines()[-1])["predictions"]
    rows = json.loads((export / "sample_request.json").read_text())["instances"]
    columns = {"inputs": {name: [row[name] for row in rows] for name in rows[0]}}
    outputs = SessionModel(export).predict(columns)["outputs"]
    as_rows = ([dict(zip(outputs, values)) for values in zip(*outputs.values())]
               if isinstance(predictions[0], dict) else next(iter(outputs.values())))
    assert predictions == as_rows  # the two formats answer alike
    if (export / "litert").exists():
        _check_litert(export)
    _check_bad_requests(export)
    return outputs


def _check_litert(export):
    """Every LiteRT file the export kept was scored on the whole test set; float32 reproduces the SavedModel."""
    evaluation = json.loads((export / "evaluation.json").read_text())
    entries = evaluation["litert"]
    assert entries["float32"]["kept"] and entries["float32"]["max_difference"] <= 1e-4, entries["float32"]
    assert entries["float32"]["score"] == pytest.approx(evaluation["savedmodel"]["score"], abs=1e-3)
    kept = sorted(entry["file"] for entry in entries.values() if entry["kept"])
    assert sorted(p.name for p in (export / "litert").glob("*.tflite")) == kept
    assert (export / "litert" / "preprocessing.json").exists()
    assert all(p.name.isdigit() for p in export.parent.iterdir() if p.is_dir())  # TF Serving's base: versions only


def _check_bad_requests(export):
    """Bad REST bodies: one clear message each, as TF Serving's 400s (deployment/rest.py)."""
    from deployment.rest import BadRequest, SessionModel

    model = SessionModel(export)
    row = json.loads((export / "sample_request.json").read_text())["instances"][0]
    name, value = next(iter(row.items()))
    numeric = model.signature[name][0] is not np.object_
    bad = {
        "unknown input": ({"instances": [{**row, "nonsense": 1}]}, "unknown input 'nonsense'"),
        "missing input": ({"inputs": {k: [v] for k, v in row.items() if k != name}} if len(row) > 1 else
                          {"inputs": {"other": [value]}}, "input"),
        "wrong dtype": ({"instances": [{**row, name: "text" if numeric else 3}]}, "takes"),
        "no examples": ({"instances": []}, "non-empty"),
        "neither format": ({"examples": [row]}, "exactly one of"),
    }
    if numeric:
        bad["empty string"] = ({"instances": [{**row, name: ""}]}, "takes")
    if isinstance(value, list):
        bad["wrong shape"] = ({"instances": [{**row, name: value[:-1]}]}, "shape")
        bad["ragged batch"] = ({"instances": [row, {**row, name: value[:-1]}]}, "ragged")
    for case, (body, words) in bad.items():
        with pytest.raises(BadRequest, match=words):
            model.predict(body)
            pytest.fail(f"{case}: answered instead of refused")
    if not numeric:  # an empty text is a valid request, as in TF Serving: a defined answer
        assert len(model.predict({"instances": [{**row, name: ""}]})["predictions"]) == 1


def _run(tmp_path, app, *args):
    """A smoke run of the app: in this process on one device, in a process of its own on two replicas, in two
    processes as a cluster."""
    argv = ["--smoke", "--data-source", "mirror", "--logdir", str(tmp_path / "runs"),
            "--export-dir", str(tmp_path / "sm"), *args]
    if "multi_worker" in args:  # two worker processes on 127.0.0.1; worker 0's output
        workers = start_cluster(["-m", f"apps.{app}", *argv])
        outs = [w.communicate(timeout=600)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
        out = outs[0]
    else:
        out = cli(f"apps.{app}", *argv).stdout if "--strategy" in args else in_process(app, *argv)
    run_dir = next((tmp_path / "runs" / app).iterdir())
    return out, run_dir, json.loads((run_dir / "FINISHED.json").read_text())


@pytest.mark.long
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_regression_smoke(tmp_path, data_dir, strategy):
    out, run_dir, finished = _run(tmp_path, "regression", *STRATEGIES[strategy])
    assert ("over 2 replica(s)" in out) == (strategy == "mirrored2")
    assert 0 < finished["test_mae"] < 30
    assert {"sample_predictions/table", "predicted_vs_true", "explanations/permutation_importance", "explanations/cars",
            "test_mae"} <= _tags(run_dir / "test")
    served = _serve(tmp_path / "sm" / "regression" / "1")
    request = json.loads((tmp_path / "sm" / "regression" / "1" / "sample_request.json").read_text())
    assert set(request["instances"][0]) == {"cylinders", "displacement", "horsepower", "weight", "acceleration",
                                            "model_year", "origin", "car_name"}  # one named raw value per feature
    assert len(served["mpg"]) == 2 and all(0 < m < 80 for m in served["mpg"])

    # Wrong feature names or types are refused by the signature, naming what was wrong.
    import tensorflow as tf

    fn = tf.saved_model.load(str(tmp_path / "sm" / "regression" / "1")).signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    good = {k: tf.constant([row[k] for row in request["instances"]], dtype=specs[k].dtype) for k in specs}
    with pytest.raises(TypeError, match="weigth"):
        fn(**{("weigth" if k == "weight" else k): v for k, v in good.items()})
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="expected to be a float "
                                                                                      "tensor but is a string"):
        fn(**{**good, "weight": tf.constant(["heavy", "light"])})
    if strategy == "default":
        _explains(tmp_path, "regression", "4,97,88,2130,14.5,70,3,datsun pl510", "reference car:", "4,97,88",
                  "3 values for the 8 features")


@pytest.mark.long
def test_linear_lands_on_least_squares(tmp_path):
    """S3 in full (100 epochs of 100 samples): w and b agree with least squares to two decimals."""
    result = cli("apps.regression", "--dataset", "linear", "--model", "linear", "--logdir", str(tmp_path / "runs"),
                 "--export-dir", str(tmp_path / "sm"))
    run_dir = next((tmp_path / "runs" / "regression").iterdir())
    details = json.loads((run_dir / "FINISHED.json").read_text())["details"]
    assert abs(details["w"] - details["w_least_squares"]) < 0.005, details
    assert abs(details["b"] - details["b_least_squares"]) < 0.005, details
    assert abs(details["w_least_squares"] - 2) < 0.1 and "w_least_squares:" in result.stdout
    assert _serve(tmp_path / "sm" / "regression_linear" / "1")["y"]


# Sentiment's two replicas are two workers: its macro-F1 is a predict() after training, which every worker
# must join (MirroredStrategy's two replicas: tests/test_privacy.py trains it so under --dp).
CLUSTER = {"default": [], "cluster2": ["--strategy", "multi_worker", "--litert", "none", "--run-id", "cluster"]}


@pytest.mark.long
@pytest.mark.parametrize("strategy", list(CLUSTER))
def test_sentiment_smoke(tmp_path, data_dir, strategy):
    out, run_dir, finished = _run(tmp_path, "sentiment", *CLUSTER[strategy])
    assert ("over 2 replica(s)" in out and "reads only its own rows" in out) == (strategy == "cluster2")
    assert "texts with conflicting labels dropped" in out and "test_macro_f1:" in out
    assert 0 <= finished["details"]["test_macro_f1"] <= 1
    assert {"sample_predictions/table", "explanations/text", "explanations/image",
            "test_accuracy"} <= _tags(run_dir / "test")
    assert (run_dir / "test" / "projector_config.pbtxt").exists() and (run_dir / "test" / "metadata.tsv").exists()
    served = _serve(tmp_path / "sm" / "sentiment" / "1")
    assert set(served["label"]) <= {"negative", "neutral", "positive"}
    np.testing.assert_allclose(np.sum(served["probabilities"], axis=1), 1.0, atol=1e-4)
    if strategy == "default":
        _tensorboard_serves_everything(tmp_path / "runs" / "sentiment", run_dir.name)
        _explains(tmp_path, "sentiment", "what a great flight, thank you", "the words it rests on (occlusion)",
                  "   ", "needs a non-empty text")


def _tensorboard_serves_everything(logdir, run):
    """A real TensorBoard serves every kind of entry the run wrote: scalars, images, text, HParams, projector."""
    from urllib.parse import urlencode

    with TensorBoard(logdir) as board:
        scalars = board.get("data/plugin/scalars/tags")
        assert {"epoch_accuracy", "best_accuracy", "epoch_loss", "best_loss"} <= set(scalars[f"{run}/validation"])
        assert {"test_accuracy", "test_loss", "test_macro_f1"} <= set(scalars[f"{run}/test"])
        assert {"epoch_loss", "batch_loss", "batch_learning_rate"} <= set(scalars[f"{run}/train"])
        assert "explanations/image" in board.get("data/plugin/images/tags")[f"{run}/test"]
        (image,) = board.get("data/plugin/images/images?" + urlencode({"run": f"{run}/test",
                                                                       "tag": "explanations/image"}))
        assert board.get("data/plugin/images/individualImage?" + image["query"], raw=True).startswith(b"\x89PNG")
        assert {"sample_predictions/table",
                "explanations/text"} <= set(board.get("data/plugin/text/tags")[f"{run}/test"])
        (text,) = board.get("data/plugin/text/text?" + urlencode({"run": f"{run}/test", "tag": "explanations/text"}))
        assert "<strong>" in text["text"] and "strongest: <code>" in text["text"]  # markdown, rendered
        experiment = board.post("data/plugin/hparams/experiment", {"experimentName": ""})
        columns = {h["name"] for h in experiment["hparamInfos"]}
        assert {"model", "epochs", "batch_size", "learning_rate", "precision", "replicas", "max_tokens", "units",
                "filters"} <= columns  # every sentiment model's hyperparameters, the cnn's too
        assert not columns & {"logdir", "export_dir", "backup_every", "run_id", "profile", "fresh", "smoke",
                              "cpu_devices"}
        metrics = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
        assert {("validation", "epoch_accuracy"), ("validation", "best_accuracy"), ("test", "test_accuracy"),
                ("test", "test_macro_f1")} <= metrics
        (group,) = board.post("data/plugin/hparams/session_groups", {
            "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                      "STATUS_RUNNING"],
            "colParams": [], "startIndex": 0, "sliceSize": 10})["sessionGroups"]
        assert group["hparams"]["model"] == "bag" and group["hparams"]["learning_rate"] == pytest.approx(0.003)
        assert f"{run}/test" in board.get("data/plugin/projector/runs")
        (embedding,) = board.get("data/plugin/projector/info?" + urlencode({"run": f"{run}/test"}))["embeddings"]
        assert embedding["metadataPath"] == "metadata.tsv" and embedding["tensorShape"][0] > 100


def _explains(tmp_path, app, given, expected, bad, complaint):
    """python -m apps.<app> --explain, in this process: the prediction and a picture; bad input is one line."""
    import importlib

    from cli.main import main

    module = importlib.import_module(f"apps.{app}")
    picture = tmp_path / "explained.png"
    common = ["--export-dir", str(tmp_path / "sm"), "--logdir", str(tmp_path / "runs")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(module, ["--explain", given, "--explain-to", str(picture), *common]) == 0
    assert "prediction:" in out.getvalue() and expected in out.getvalue(), out.getvalue()
    from PIL import Image

    assert Image.open(picture).size[0] >= 400
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(module, ["--explain", bad, *common]) == 2
    assert err.getvalue().count("\n") == 1 and complaint in err.getvalue(), err.getvalue()


@pytest.mark.long
def test_character_sentiment_model_smoke(tmp_path, data_dir):
    """--model lstm: characters between boundaries, its vocabulary written beside the model and the export."""
    out, run_dir, finished = _run(tmp_path, "sentiment", "--model", "lstm", "--sequence-length", "32")
    assert 0 <= finished["details"]["test_macro_f1"] <= 1
    vocabulary = json.loads((run_dir / "vocabulary.json").read_text())
    assert vocabulary[:2] == ["", "[UNK]"] and "\n" in vocabulary
    export = tmp_path / "sm" / "sentiment" / "1"
    assert json.loads((export / "vocabulary.json").read_text()) == vocabulary
    assert set(_serve(export)["label"]) <= {"negative", "neutral", "positive"}
    assert {"explanations/text", "explanations/image"} <= _tags(run_dir / "test")  # characters summed per word
    _explains(tmp_path, "sentiment", "my flight was delayed", "(integrated gradients)", "", "needs a non-empty text")


@pytest.mark.long
def test_language_model_smoke_generate_and_bad_prompts(tmp_path, data_dir):
    out, run_dir, finished = _run(tmp_path, "charlm", "--sequence-length", "48")
    details = finished["details"]
    assert details["test_perplexity"] > 1 and details["bigram_test_perplexity"] > 1
    assert {"sample_continuations", "explanations/text", "explanations/image"} <= _tags(run_dir / "test")
    export = tmp_path / "sm" / "charlm" / "1"
    served = _serve(export)
    assert len(served["next_token"]) == 2 and served["unknown_characters"] == [0, 0]
    vocabulary = json.loads((export / "vocabulary.json").read_text())
    assert len(served["probabilities"][0]) == len(vocabulary)

    _explains(tmp_path, "charlm", "I think that", "next character", "snow \u2603", "never saw in training")
    generated = cli("apps.charlm", "--generate", "I think", "--length", "20", "--export-dir", str(tmp_path / "sm"))
    assert generated.stdout.strip().splitlines()[-1].startswith("I think")
    # unknown characters listed in the prompt's order (the heart comes after the snowman in Unicode)
    for prompt, words in [("\u2665 snow \u2603 man", "never saw in training: '\u2665\u2603'"), ("  ",
                                                                                                "non-empty prompt")]:
        bad = cli("apps.charlm", "--generate", prompt, "--export-dir", str(tmp_path / "sm"), check=False)
        lines = error_lines(bad.stderr)
        assert bad.returncode == 2 and len(lines) == 1 and words in lines[0], lines
    assert sorted(p.name for p in (tmp_path / "sm" / "charlm").iterdir()) == ["1"]  # nothing touched
    # The former `apps.text --task lm` still runs it, and says what it ran.
    alias = cli("apps.text", "--task", "lm", "--generate", "I think", "--length", "5", "--export-dir",
                str(tmp_path / "sm"))
    assert "apps.text is now apps.charlm" in alias.stderr
    assert alias.stdout.strip().splitlines()[-1].startswith("I think")


@pytest.mark.long
def test_language_model_under_mirrored_strategy(tmp_path, data_dir):
    out, run_dir, finished = _run(tmp_path, "charlm", "--sequence-length", "32",
                                  *STRATEGIES["mirrored2"])
    assert not (tmp_path / "sm" / "charlm" / "1" / "litert").exists()  # --litert none
    assert "over 2 replica(s)" in out and finished["details"]["test_perplexity"] > 1
    assert _serve(tmp_path / "sm" / "charlm" / "1")["unknown_characters"] == [0, 0]

"""End to end: `python -m apps.mnist --smoke` on real data, through TensorBoard logs
to an export that a fresh process loads and serves."""
import json
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from conftest import ROOT, cli


def _tags(folder):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    return set(acc.Tags()["tensors"]) | set(acc.Tags()["graph"] and ["__graph__"] or [])


SERVE = """
import json, sys
import keras, numpy as np, tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
images = np.load(sys.argv[3])
out = fn(images=tf.constant(images[..., 0]))
checkpoint = keras.saving.load_model(sys.argv[2]).predict(images, verbose=0)
print(json.dumps({"class": out["class"].numpy().tolist(), "sum": out["probabilities"].numpy().sum(1).tolist(),
                  "max_diff": float(np.abs(out["probabilities"].numpy() - checkpoint).max())}))
"""


@pytest.mark.parametrize("strategy", [
    ["--profile", "3,4"],
    # LiteRT: the default run covers it; float16 and bfloat16: tests/test_precision.py
    pytest.param(["--strategy", "mirrored", "--cpu-devices", "2", "--litert", "none"], marks=pytest.mark.long),
], ids=["default+profile", "mirrored2"])
def test_smoke_run_end_to_end(tmp_path, data_dir, mnist_arrays, strategy):
    result = cli("apps.mnist", "--smoke", "--data-source", "mirror", "--logdir", str(tmp_path / "runs"),
                 "--export-dir", str(tmp_path / "sm"), *strategy)
    out = result.stdout
    if "mirrored" in strategy:
        assert "over 2 replica(s) (MirroredStrategy)" in out
    for heading in ("Test set:", "Logs:", "Checkpoint:", "TensorBoard:  tensorboard --logdir", "Export:",
                    "Serve:        docker run", "Request:      curl"):
        assert heading in out
    run_dir = next((tmp_path / "runs" / "mnist").iterdir())
    finished = json.loads((run_dir / "FINISHED.json").read_text())
    assert 0.0 <= finished["test_accuracy"] <= 1.0 and finished["export"].endswith("/1")
    assert json.loads((run_dir / "run_config.json").read_text())["smoke"] is True
    assert (run_dir / "model.keras").exists()
    if "--litert" not in strategy:  # the default model's LiteRT files, scored on the smoke test set
        evaluation = json.loads((tmp_path / "sm" / "mnist" / "1" / "evaluation.json").read_text())
        assert "LiteRT:" in out and evaluation["litert"]["float32"]["kept"]
        assert evaluation["litert"]["float32"]["max_difference"] <= 1e-4

    # TensorBoard: scalars per epoch and per N steps, learning rate, histograms,
    # the graph, labelled sample predictions, explanations, confusion matrix, test metrics, hparams.
    train = _tags(run_dir / "train")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "batch_loss", "batch_learning_rate",
            "keras", "__graph__"} <= train  # conceptual Keras graph and op graph
    assert any(t.endswith("/histogram") for t in train)
    assert {"epoch_loss", "epoch_accuracy"} <= _tags(run_dir / "validation")
    assert {"sample_predictions", "explanations", "confusion_matrix", "test_accuracy"} <= _tags(run_dir / "test")
    assert {"_hparams_/session_start_info", "_hparams_/experiment"} <= _tags(run_dir)
    assert "best_accuracy" in _tags(run_dir / "validation")
    if "--profile" in strategy:
        assert list((run_dir / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))

    # The export, served by a fresh process on real test images.
    export = tmp_path / "sm" / "mnist" / "1"
    np.save(tmp_path / "images.npy", mnist_arrays["x_test"][:500])
    served = subprocess.run([sys.executable, "-c", SERVE, str(export), str(run_dir / "model.keras"),
                             str(tmp_path / "images.npy")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert served.returncode == 0, served.stderr[-2000:]
    answer = json.loads(served.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(answer["sum"], 1.0, atol=1e-4)
    assert answer["max_diff"] < 1e-5  # the served model is the trained checkpoint
    assert np.mean(np.array(answer["class"]) == mnist_arrays["y_test"][:500]) > 0.2  # better than chance
    if "--profile" in strategy:  # the same command again: that run already finished; nothing is trained or exported
        again = cli("apps.mnist", "--smoke", "--data-source", "mirror", "--logdir", str(tmp_path / "runs"),
                    "--export-dir", str(tmp_path / "sm"), *strategy)
        assert f"this command already ran to the end in {run_dir}" in again.stdout, again.stdout
        assert f"its export: {export}" in again.stdout and "--fresh" in again.stdout
        assert [p.name for p in (tmp_path / "runs" / "mnist").iterdir() if p.is_dir()] == [run_dir.name]
        assert sorted(p.name for p in (tmp_path / "sm" / "mnist").iterdir()) == ["1"]


def test_several_steps_per_call_train_every_step_once(tmp_path, capsys):
    """--steps-per-execution 4 (one replica; on several, Keras 3.15 cannot: tests/test_errors.py): the run trains
    every step of the epoch, and Keras reports to the callbacks (the step log) once per call, every 4th step."""
    from apps import mnist
    from cli.main import main
    from conftest import ONLY_TRAINING, rows

    assert main(mnist, ["--smoke", "--model", "mlp", "--steps-per-execution", "4", "--data-source", "mirror",
                        "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"), *ONLY_TRAINING]) == 0
    capsys.readouterr()
    run_dir = next((tmp_path / "runs" / "mnist").iterdir())
    steps = 2048 // 32  # the seed MLP's batch
    assert sorted({r["global_step"] for r in rows(run_dir)}) == list(range(4, steps + 1, 4))  # Keras reports every 4th
    assert json.loads((run_dir / "FINISHED.json").read_text())["test_accuracy"] > 0.5

"""Interruption: a real SIGKILL part-way through training, then the same command
resumes from the last backup instead of starting over; --fresh starts over."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, cli


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_killed_run_resumes_from_its_backup_and_finishes(tmp_path):
    args = ["apps.mnist", "--smoke", "--model", "cnn", "--epochs", "4", "--batch-size", "32",
            "--data-source", "mirror", "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm")]
    run_dir = tmp_path / "runs" / "mnist"
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # 2048 smoke examples / 32 = 64 steps an epoch; backups every 10 steps. Kill in epoch 2 or later.
    deadline = time.time() + 300
    steps_file = None
    while time.time() < deadline and proc.poll() is None:
        found = list(run_dir.glob("*/steps.jsonl"))
        if found and len(_rows(found[0])) >= 64 + 20:
            steps_file = found[0]
            break
        time.sleep(0.02)
    assert steps_file is not None and proc.poll() is None, "training did not get far enough to be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(_rows(steps_file))
    backup = steps_file.parent / "backup" / "training_metadata.json"
    saved = json.loads(backup.read_text())
    assert saved["epoch"] >= 1  # a backup from within/after epoch 2 exists
    assert not (steps_file.parent / "FINISHED.json").exists()

    resumed = cli(*args)
    assert f"run folder {steps_file.parent} (resuming from its last backup)" in resumed.stdout
    rows = _rows(steps_file)
    first_run, second_run = rows[:killed_at], rows[killed_at:]
    # It picked up at the interrupted epoch, not at epoch 0...
    assert second_run[0]["epoch"] == saved["epoch"] and second_run[0]["step"] == 0
    assert second_run[-1]["epoch"] == 3  # ...and finished all 4 epochs
    # ...with the trained weights: its first loss is far below the untrained first loss.
    assert second_run[0]["loss"] < 0.5 * first_run[0]["loss"]
    assert (steps_file.parent / "FINISHED.json").exists()
    assert not (steps_file.parent / "backup").exists()  # dropped once the export was in place
    assert (tmp_path / "sm" / "mnist" / "1" / "saved_model.pb").exists()



def test_run_folder_resolution_resumes_the_newest_unfinished_run_unless_fresh(tmp_path):
    from apps import mnist
    from training.config import parse_config
    from training.outputs import FINISHED, mark_finished, resolve_run_dir

    def resolve(*extra):
        return resolve_run_dir(parse_config(mnist, ["--logdir", str(tmp_path), *extra]))

    first = resolve()
    assert first.name.endswith("-1") and first.name.startswith("cnn_bn-")
    first.mkdir(parents=True)
    assert resolve() == first  # unfinished: the same command resumes it
    assert resolve("--fresh").name.endswith("-2")  # --fresh starts over beside it
    assert resolve("--epochs", "3").parent == first.parent and resolve("--epochs", "3") != first  # another config
    mark_finished(first, {"test_accuracy": 0.9})
    assert (first / FINISHED).exists() and resolve().name.endswith("-2")  # finished: a new run
    named = resolve("--run-id", "mine")
    assert named.name == "mine"
    named.mkdir()
    mark_finished(named, {})
    from training.config import UsageError

    with pytest.raises(UsageError, match="already finished"):
        resolve("--run-id", "mine")


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    args = ["apps.mnist", "--smoke", "--model", "cnn", "--epochs", "3", "--data-source", "mirror",
            "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm")]
    # A shell's background job (`.ci/run &`) starts with SIGINT ignored, and a
    # child inherits that; a terminal's Ctrl-C reaches a process that has it at default.
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "runs").glob("mnist/*/steps.jsonl")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted: rerun the same command to resume from the last backup" in err
    assert not (tmp_path / "sm" / "mnist").exists() or not any((tmp_path / "sm" / "mnist").iterdir())

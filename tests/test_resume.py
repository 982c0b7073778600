"""Interruption, with real processes and real signals: a killed run resumes at the
exact step of its last backup, a SIGTERM or Ctrl-C stops at a step with a backup
there and loses nothing, --deterministic reruns end bit-identical, and damaged
backups or another configuration's folder are refused in one line.

Smoke runs: 2,048 training images at batch 32 are 64 steps an epoch, and
--smoke backs up every 10 steps as well as at every epoch end.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT, backup_steps, cli, error_lines, rows, wait_until, where, ONLY_TRAINING

STEPS = 64  # per epoch, see above


def _args(tmp_path, *extra, logdir="runs"):
    return ["apps.mnist", "--smoke", "--batch-size", "32", "--data-source", "mirror",
            "--logdir", str(tmp_path / logdir), "--export-dir", str(tmp_path / "sm"), *ONLY_TRAINING, *extra]


def start(args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def the_run(tmp_path, logdir="runs") -> Path:
    found = list((tmp_path / logdir / "mnist").glob("*/run_config.json"))
    return found[0].parent if found else tmp_path / logdir / "mnist" / "none-yet"


def check_positions(all_rows):
    """Every row's (epoch, step) is the global step it reports: nothing misnumbered."""
    for row in all_rows:
        assert row["epoch"] * STEPS + row["step"] + 1 == row["global_step"], row


@pytest.mark.long
def test_killed_runs_resume_at_their_exact_step_and_end_bit_identical(tmp_path):
    """SIGKILL just after an epoch boundary, at a random step of each later epoch,
    and once more while testing and exporting after the last epoch: every rerun
    continues at its last backup's step (only the steps after that backup are
    trained again; after the last epoch none), and with --deterministic the end
    equals an uninterrupted run to the last bit."""
    args = _args(tmp_path, "--epochs", "3", "--deterministic")
    run = lambda: the_run(tmp_path)  # noqa: E731
    rng = random.Random()
    random_steps = [rng.randint(STEPS + 3, 2 * STEPS - 3), rng.randint(2 * STEPS + 3, 3 * STEPS - 3)]
    kills = [("the end of epoch 1", lambda new: STEPS in backup_steps(run() / "backup")),
             *((f"global step {s}", lambda new, s=s: any(r["global_step"] >= s for r in new)) for s in random_steps),
             ("the end of training", lambda new: 3 * STEPS in backup_steps(run() / "backup"))]
    twice, resumed_from = set(), None
    for what, condition in kills:
        seen = len(rows(run()))
        proc = start(args)
        wait_until(lambda condition=condition, seen=seen: condition(rows(run())[seen:]), proc, what)
        proc.kill()
        proc.communicate()
        new = rows(run())[seen:]
        if resumed_from is not None:  # this process picked up right after the backup the last one left
            assert new[0]["global_step"] == resumed_from + 1, (what, random_steps)
        resumed_from = max(backup_steps(run() / "backup"))
        if what == kills[0][0]:
            assert resumed_from == STEPS  # killed between the epoch-end backup and the next one
        twice |= set(range(resumed_from + 1, new[-1]["global_step"] + 1))
    assert resumed_from == 3 * STEPS and not (run() / "FINISHED.json").exists()  # killed testing or exporting
    seen = len(rows(run()))
    final = cli(*args, timeout=600)
    assert f"resuming {where(resumed_from, STEPS)} from its backup" in final.stdout
    assert len(rows(run())) == seen  # nothing left to train: it went straight to testing and export
    boundary = [r for r in rows(run()) if r["global_step"] == STEPS + 1]
    assert [(r["epoch"], r["step"]) for r in boundary] == [(1, 0)] * len(boundary)

    all_rows = rows(run())
    check_positions(all_rows)
    counts = Counter(r["global_step"] for r in all_rows)
    assert sorted(counts) == list(range(1, 3 * STEPS + 1))  # every step trained...
    assert {s for s, n in counts.items() if n == 2} == twice, random_steps  # ...twice only after a kill, past a backup
    assert max(counts.values()) <= 2

    reference = cli(*_args(tmp_path, "--epochs", "3", "--deterministic", logdir="reference"), timeout=600)
    finished = json.loads((run() / "FINISHED.json").read_text())
    uninterrupted = json.loads((the_run(tmp_path, "reference") / "FINISHED.json").read_text())
    assert finished["weights_sha256"] == uninterrupted["weights_sha256"], random_steps
    test_line = [line for line in reference.stdout.splitlines() if line.startswith("Test set:")]
    assert test_line and test_line[0] in final.stdout  # the same test loss to every printed digit: trained weights


def _stop_with(tmp_path, signum, *extra) -> tuple[subprocess.Popen, str]:
    """Start a 2-epoch run, send `signum` in the middle of epoch 2, return (process, stderr)."""
    # A shell's background job (`.ci/run &`) starts with SIGINT ignored, and a
    # child inherits that; a terminal's Ctrl-C reaches a process that has it at default.
    proc = start(_args(tmp_path, "--epochs", "2", *extra),
                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    at = STEPS + random.randint(8, STEPS - 20)
    wait_until(lambda: any(r["global_step"] >= at for r in rows(the_run(tmp_path))), proc, f"step {at}")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc, err


@pytest.mark.parametrize("signum, extra", [
    (signal.SIGTERM, ()),
    (signal.SIGINT, ()),
    (signal.SIGTERM, ("--strategy", "mirrored", "--cpu-devices", "2")),
], ids=["sigterm", "ctrl-c", "sigterm-mirrored2"])
@pytest.mark.long
def test_a_signal_stops_at_a_step_with_a_backup_there_and_the_rerun_loses_nothing(tmp_path, signum, extra):
    """(Ctrl-C stops the way SIGTERM does; its rerun is SIGTERM's, so it is not repeated.)"""
    proc, err = _stop_with(tmp_path, signum, *extra)
    run = the_run(tmp_path)
    assert proc.returncode == 128 + signum, err[-3000:]
    trained = rows(run)
    last = trained[-1]["global_step"]
    name = signal.Signals(signum).name
    assert (f"stopped: {name}, {where(last, STEPS)}; backup "
            f"{run / 'backup' / f'step-{last:09d}'}; rerun the same command to resume there") in err
    assert max(backup_steps(run / "backup")) == last  # the backup is at the very step reached
    assert not (tmp_path / "sm" / "mnist").exists()  # stopped, not finished: nothing exported
    if signum == signal.SIGINT:
        return

    again = cli(*_args(tmp_path, "--epochs", "2", *extra), timeout=600)
    assert f"resuming {where(last, STEPS)} from its backup" in again.stdout
    all_rows = rows(run)
    check_positions(all_rows)
    assert [r["global_step"] for r in all_rows] == list(range(1, 2 * STEPS + 1))  # no step lost, none repeated
    assert (run / "FINISHED.json").exists() and not (run / "backup").exists()
    assert (tmp_path / "sm" / "mnist" / "1" / "saved_model.pb").exists()


@pytest.mark.long
def test_damaged_backups_are_reported_and_never_silently_replaced_by_a_fresh_start(tmp_path):
    proc, _ = _stop_with(tmp_path, signal.SIGTERM)
    assert proc.returncode == 143
    run = the_run(tmp_path)
    newest, previous = sorted(backup_steps(run / "backup"), reverse=True)
    pristine = tmp_path / "pristine"
    shutil.copytree(run / "backup", pristine)
    trained = len(rows(run))

    # Both damaged: one line, exit 2, no training. (That a second try is refused
    # too, the damaged ones set aside by then: tests/test_backups.py.)
    for step in (newest, previous):
        npz = run / "backup" / f"step-{step:09d}" / "variables.npz"
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])  # truncated, as by a full disk
    result = cli(*_args(tmp_path, "--epochs", "2"), check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in error_lines(result.stderr) if line.startswith("error:")]
    assert len(errors) == 1 and f"no backup in {run / 'backup'} can be used" in errors[0] and "--fresh" in errors[0]
    assert len(rows(run)) == trained and not (tmp_path / "sm" / "mnist").exists()

    # The newest damaged, the one before it whole: reported, set aside, resumed from the whole one.
    shutil.rmtree(run / "backup")
    shutil.copytree(pristine, run / "backup")
    npz = run / "backup" / f"step-{newest:09d}" / "variables.npz"
    npz.write_bytes(npz.read_bytes()[:1000])
    again = cli(*_args(tmp_path, "--epochs", "2"), timeout=600)
    assert (f"backup {run / 'backup' / f'step-{newest:09d}'} cannot be loaded (variables.npz does not match its "
            f"checksum: truncated or changed); set aside as damaged-step-{newest:09d}") in again.stdout
    assert f"(global step {previous}) from its backup" in again.stdout
    counts = Counter(r["global_step"] for r in rows(run))
    assert sorted(counts) == list(range(1, 2 * STEPS + 1))
    assert {s for s, n in counts.items() if n == 2} == set(range(previous + 1, newest + 1))


def test_a_run_id_resumed_with_other_model_flags_is_refused_and_left_alone(tmp_path):
    from apps import mnist
    from cli.parser import parse_config

    folder = tmp_path / "runs" / "mnist" / "mine"
    folder.mkdir(parents=True)
    first = parse_config(mnist, ["--run-id", "mine", "--epochs", "3", "--data-source", "mirror",
                                 "--logdir", str(tmp_path / "runs")])
    (folder / "run_config.json").write_text(first.to_json())
    before = sorted(p.name for p in folder.iterdir())
    result = cli("apps.mnist", "--run-id", "mine", "--epochs", "4", "--learning-rate", "0.01", "--logdir",
                 str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"), "--data-source", "mirror", check=False)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        "error: --run-id mine was started with other settings (--epochs 4 (was 3), --learning-rate 0.01 (was 0.003)); "
        "rerun it with its own flags to resume it, or pick another --run-id"]
    assert sorted(p.name for p in folder.iterdir()) == before
    # Where outputs go is not part of a run's identity: another --export-dir still resumes it.
    same = parse_config(mnist, ["--run-id", "mine", "--epochs", "3", "--data-source", "mirror", "--logdir",
                                str(tmp_path / "runs"),
                                "--export-dir", str(tmp_path / "elsewhere")])
    from training.run_folder import resolve_run_dir

    assert resolve_run_dir(same) == folder


def test_run_folder_resolution_resumes_the_newest_unfinished_run_unless_fresh(tmp_path):
    from apps import mnist
    from cli.parser import parse_config
    from core.errors import UsageError
    from training.run_folder import AlreadyFinished, mark_finished, resolve_run_dir

    def resolve(*extra):
        return resolve_run_dir(parse_config(mnist, ["--logdir", str(tmp_path), *extra]))

    first = resolve()
    assert first.name.endswith("-1") and first.name.startswith("cnn_bn-")
    first.mkdir(parents=True)
    assert resolve() == first  # unfinished: the same command resumes it
    assert resolve("--fresh").name.endswith("-2")  # --fresh starts over beside it
    assert resolve("--epochs", "3").parent == first.parent and resolve("--epochs", "3") != first  # another config
    assert resolve("--deterministic") != first  # so is --deterministic
    assert resolve("--backup-every", "50", "--log-every", "7") == first  # how often it backs up or logs is not
    mark_finished(first, {"test_accuracy": 0.9, "export": "saved_models/mnist/4"})
    assert resolve() == first and resolve("--fresh").name.endswith("-2")  # finished: found (not retrained); --fresh
    with pytest.raises(AlreadyFinished, match=r"already ran to the end .*test_accuracy 0.9000.*saved_models/mnist/4"):
        raise AlreadyFinished(first)
    named = resolve("--run-id", "mine")
    assert named.name == "mine"
    named.mkdir()
    mark_finished(named, {"held": "saved_models/held/mnist/x"})
    assert resolve("--run-id", "mine") == named and "held back by the publishing gate" in str(AlreadyFinished(named))
    with pytest.raises(UsageError, match="--fresh with --run-id mine: that folder exists"):
        resolve("--run-id", "mine", "--fresh")


def test_a_signal_outside_training_stops_at_once_and_a_second_one_inside_too():
    """In-process, with real signals to this process: StopSignals' two modes. SIGINT is set to its
    default first: a shell's background job (`.ci/run &`) starts this process with SIGINT ignored,
    and StopSignals rightly leaves an ignored signal alone."""
    from training.preemption import Stopped, requests
    from cli.main import guarded

    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _two_modes(Stopped, requests, guarded)
    finally:
        signal.signal(signal.SIGINT, inherited)


def _two_modes(Stopped, requests, guarded):
    def work():
        with requests.installed("rerun it"):
            os.kill(os.getpid(), signal.SIGTERM)  # while loading data, say: nothing to back up
            time.sleep(5)
            raise AssertionError("not stopped")

    assert guarded(work, "rerun it") == 143
    with requests.installed("rerun it"):
        requests.graceful = True  # what the backup callback sets while training
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert requests.received == signal.SIGTERM  # recorded, training goes on to the step's end
        with pytest.raises(Stopped, match="SIGINT, at once; rerun it"):
            os.kill(os.getpid(), signal.SIGINT)  # insisting stops at once
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back as it was

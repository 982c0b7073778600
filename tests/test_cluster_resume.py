"""Interruption of a real two-worker MultiWorkerMirroredStrategy run on 127.0.0.1:
a SIGTERM to one worker stops both at the same step with a backup there; a killed
worker makes the other leave in one line instead of hanging; restarted, both
resume from the newest step they both hold and finish."""
import random
import signal
import time

import pytest

from conftest import backup_steps, error_lines, rows, start_cluster, wait_until, where

MW_STEPS = 32  # 2,048 smoke images at a global batch of 64


def _cluster_args(tmp_path):
    return ["-m", "apps.mnist", "--smoke", "--model", "mlp", "--batch-size", "64", "--epochs", "6",
            "--strategy", "multi_worker", "--run-id", "cluster", "--data-source", "mirror",
            "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm")]


def _finish_restarted_cluster(tmp_path, resume_step: int):
    """Start both workers again: they resume at `resume_step` and finish."""
    workers = start_cluster(_cluster_args(tmp_path))
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    position = f"resuming {where(resume_step, MW_STEPS)} from its backup"
    assert position in outputs[0] and position in outputs[1]
    assert (tmp_path / "sm" / "mnist" / "1" / "saved_model.pb").exists()


@pytest.mark.slow
def test_a_sigterm_to_one_worker_stops_every_worker_at_the_same_step(tmp_path):
    run = tmp_path / "runs" / "mnist" / "cluster"
    workers = start_cluster(_cluster_args(tmp_path))
    at = MW_STEPS + random.randint(5, MW_STEPS - 10)
    wait_until(lambda: any(r["global_step"] >= at for r in rows(run)), workers[0], f"step {at}")
    workers[1].send_signal(signal.SIGTERM)
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [143, 143], outputs[0][-3000:] + outputs[1][-3000:]
    last = rows(run)[-1]["global_step"]
    assert rows(run, "steps-worker1.jsonl")[-1]["global_step"] == last  # the same step on both...
    assert max(backup_steps(run / "backup")) == max(backup_steps(run / "backup-worker1")) == last  # ...backed up
    assert f"stopped: SIGTERM (sent to another worker), {where(last, MW_STEPS)}; backup" in outputs[0]
    assert f"stopped: SIGTERM, {where(last, MW_STEPS)}; backup" in outputs[1]

    _finish_restarted_cluster(tmp_path, last)
    assert [r["global_step"] for r in rows(run)] == list(range(1, 6 * MW_STEPS + 1))  # no step lost or repeated


@pytest.mark.slow
@pytest.mark.parametrize("victim, how", [(1, signal.SIGKILL), (0, signal.SIGSTOP)], ids=["worker1-killed", "worker0-frozen"])
def test_a_lost_worker_makes_the_other_leave_and_both_restarted_resume(tmp_path, victim, how):
    """A killed worker's port refuses the survivor's next collective; a frozen one
    (SIGSTOP: a hung or vanished machine, its connections left open) is found by
    the missed heartbeats of TensorFlow's coordination service, which worker 0 hosts."""
    run = tmp_path / "runs" / "mnist" / "cluster"
    workers = start_cluster(_cluster_args(tmp_path))
    at = MW_STEPS + random.randint(5, MW_STEPS - 5)
    wait_until(lambda: any(r["global_step"] >= at for r in rows(run)), workers[0], f"step {at}")
    workers[victim].send_signal(how)
    killed = time.time()
    survivor = workers[1 - victim]
    output = survivor.communicate(timeout=150)[0]
    assert time.time() - killed < 120 and survivor.returncode == 69, output[-3000:]
    errors = [line for line in error_lines(output) if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: lost contact with another worker of this multi-worker run")
    assert errors[0].endswith("start every worker again with the same command: they resume from their common last backup")
    workers[victim].kill()  # a frozen one too
    workers[victim].communicate()

    common = min(max(backup_steps(run / "backup")), max(backup_steps(run / "backup-worker1")))
    trained = len(rows(run))
    _finish_restarted_cluster(tmp_path, common)
    after = rows(run)[trained:]
    assert after[0]["global_step"] == common + 1 and after[-1]["global_step"] == 6 * MW_STEPS
    assert [r["global_step"] for r in after] == list(range(common + 1, 6 * MW_STEPS + 1))

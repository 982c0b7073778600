"""Interruption of a real two-worker MultiWorkerMirroredStrategy run on 127.0.0.1.

One run, interrupted three ways and restarted each time, as an operator would
(one test, to start the two-process cluster as few times as possible):
a SIGTERM to one worker stops both at the same step with a backup there; a
killed worker, and a frozen one, make the other leave in one line instead of
hanging on a collective; restarted, both resume from the newest step they
both hold, and the run finishes with every step trained.
"""
import random
import signal
import time
from collections import Counter

import pytest

from conftest import backup_steps, error_lines, rows, start_cluster, wait_until, where, ONLY_TRAINING

STEPS = 32  # 2,048 smoke images at a global batch of 64
EPOCHS = 6


def _start(tmp_path):
    return start_cluster(["-m", "apps.mnist", "--smoke", "--model", "mlp", "--batch-size", "64", "--epochs",
                          str(EPOCHS),
                          "--strategy", "multi_worker", "--run-id", "cluster", "--data-source", "mirror",
                          "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"), *ONLY_TRAINING])


def _lose(workers, victim: int, how: int) -> str:
    """Kill or freeze one worker; the other must leave by itself, in one line, within 2 minutes."""
    workers[victim].send_signal(how)
    lost = time.time()
    survivor = workers[1 - victim]
    output = survivor.communicate(timeout=150)[0]
    assert time.time() - lost < 120 and survivor.returncode == 69, output[-3000:]
    errors = [line for line in error_lines(output) if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert errors[0].startswith("error: lost contact with another worker of this multi-worker run (")
    assert errors[0].endswith("start every worker again with the same command: "
                              "they resume from their common last backup")
    workers[victim].kill()  # a frozen one too
    workers[victim].communicate()
    return output


@pytest.mark.long
def test_a_cluster_stopped_killed_and_frozen_resumes_each_time_and_finishes(tmp_path):
    run = tmp_path / "runs" / "mnist" / "cluster"

    def progress_to(step, seen):
        return lambda: any(r["global_step"] >= step for r in rows(run)[seen:])

    # 1. SIGTERM to worker 1 only: both stop at the same step, each with its backup there.
    workers = _start(tmp_path)
    wait_until(progress_to(STEPS + random.randint(5, STEPS - 10), 0), workers[0], "epoch 2")
    workers[1].send_signal(signal.SIGTERM)
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [143, 143], outputs[0][-3000:] + outputs[1][-3000:]
    stopped = rows(run)[-1]["global_step"]
    assert rows(run, "steps-worker1.jsonl")[-1]["global_step"] == stopped
    assert max(backup_steps(run / "backup")) == max(backup_steps(run / "backup-worker1")) == stopped
    assert f"stopped: SIGTERM (sent to another worker), {where(stopped, STEPS)}; backup" in outputs[0]
    assert f"stopped: SIGTERM, {where(stopped, STEPS)}; backup" in outputs[1]

    # 2. Restarted, they continue at the next step; then worker 1 is killed.
    seen = len(rows(run))
    workers = _start(tmp_path)
    wait_until(progress_to(3 * STEPS + random.randint(1, STEPS - 2), seen), workers[0], "epoch 4")
    output = _lose(workers, victim=1, how=signal.SIGKILL)
    assert f"resuming {where(stopped, STEPS)} from its backup" in output
    assert rows(run)[seen]["global_step"] == stopped + 1  # nothing lost or repeated across the SIGTERM

    # 3. Restarted from the newest step both hold; then worker 0, which hosts
    # TensorFlow's coordination service, freezes (a hung or vanished machine).
    common = min(max(backup_steps(run / "backup")), max(backup_steps(run / "backup-worker1")))
    seen = len(rows(run))
    workers = _start(tmp_path)
    wait_until(progress_to(common + 20, seen), workers[0], f"step {common + 20}")
    output = _lose(workers, victim=0, how=signal.SIGSTOP)
    assert f"resuming {where(common, STEPS)} from its backup" in output
    assert rows(run)[seen]["global_step"] == common + 1

    # 4. Restarted once more: they resume and finish.
    common = min(max(backup_steps(run / "backup")), max(backup_steps(run / "backup-worker1")))
    seen = len(rows(run))
    workers = _start(tmp_path)
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert all(f"resuming {where(common, STEPS)} from its backup" in out for out in outputs)
    assert rows(run)[seen]["global_step"] == common + 1
    assert sorted(Counter(r["global_step"] for r in rows(run))) == list(range(1, EPOCHS * STEPS + 1))
    assert (tmp_path / "sm" / "mnist" / "1" / "saved_model.pb").exists()

"""training/keras_compat.py: without it Keras 3 multi-worker fit fails, with it it trains."""
import json
import os
import subprocess
import sys

import keras
import pytest

from conftest import ROOT, free_ports
from training import keras_compat


def _cluster(mode):
    ports = free_ports(2)
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "mw_probe.py"), mode], cwd=ROOT,
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out = "TIMEOUT"
        results.append([line for line in out.splitlines() if line.startswith(("OK", "FAILED", "TIMEOUT"))][-1])
    return results


@pytest.mark.slow
def test_unpatched_keras_fails_and_patched_keras_trains_identically_on_two_workers():
    unpatched = _cluster("unpatched")
    assert all(r.startswith("FAILED") for r in unpatched), unpatched  # keras issue 20585 still there
    patched = _cluster("patched")
    assert all(r.startswith("OK") for r in patched), patched
    assert patched[0] == patched[1]  # identical losses on both workers
    losses = [float(v) for v in patched[0].split()[1:]]
    assert losses[2] < losses[0]


def test_patch_is_idempotent_and_names_the_checked_versions():
    from keras.src.backend.tensorflow import trainer

    keras_compat.patch_multi_worker_fit()
    first = trainer.reduce_per_replica
    keras_compat.patch_multi_worker_fit()
    assert trainer.reduce_per_replica is first
    assert keras.__version__ in keras_compat.CHECKED_KERAS_VERSIONS

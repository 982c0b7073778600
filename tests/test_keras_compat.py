"""training/keras_compat.py: without it Keras 3 multi-worker fit fails, with it it trains."""
import subprocess

import keras
import pytest

from conftest import ROOT, start_cluster
from training import keras_compat


def _cluster(mode):
    """Each worker's last line: OK <losses>, FAILED <error> or TIMEOUT."""
    results = []
    for proc in start_cluster([str(ROOT / "tests" / "mw_probe.py"), mode]):
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out = "TIMEOUT"
        results.append([line for line in out.splitlines() if line.startswith(("OK", "FAILED", "TIMEOUT"))][-1])
    return results


@pytest.mark.long
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

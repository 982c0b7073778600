"""Strategy resolution by name, mixed precision, and a real two-process multi-worker run."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import cli, start_cluster, ONLY_TRAINING
from core.errors import UsageError
from training.precision import resolve_mixed_precision
from training.strategy import read_tf_config, resolve_strategy


def test_cpu_and_auto_on_a_cpu_only_machine_use_the_default_strategy():
    # Not OneDeviceStrategy("/cpu:0"): it trains at half the speed on CPU.
    for name in ("cpu", "auto"):
        strategy = resolve_strategy(name)
        assert strategy is tf.distribute.get_strategy() and strategy.num_replicas_in_sync == 1


def test_mirrored_runs_two_replicas_on_two_logical_cpus():
    strategy = resolve_strategy("mirrored", cpu_devices=2)  # conftest split the CPU in two
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    x = np.ones((16, 3), np.float32)
    history = model.fit(x, np.ones((16, 1)), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("name, words", [
    ("gpu", "sees no GPU"),
    ("tpu", "no TPU found"),
])
def test_unavailable_hardware_is_a_usage_error(name, words):
    with pytest.raises(UsageError, match=words):
        resolve_strategy(name)


@pytest.mark.parametrize("value, words", [
    (None, "needs TF_CONFIG"),
    ("{not json", "malformed"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "malformed"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "malformed"),
])
def test_bad_tf_config_is_a_usage_error(monkeypatch, value, words):
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(UsageError, match=words):
        read_tf_config()


def test_mixed_precision_auto_is_off_on_cpu_and_explicit_choices_apply():
    cpu = resolve_strategy("cpu")
    assert resolve_mixed_precision("auto", cpu) == "float32"
    assert resolve_mixed_precision("bfloat16", cpu) == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().compute_dtype == "bfloat16"
    # The apps keep their last layer in float32, so outputs stay float32.
    from apps import images, mnist
    from cli.parser import parse_config

    model, _ = images.build_mlp(parse_config(mnist, ["--model", "mlp"]), None, 10)
    assert model.layers[2].compute_dtype == "bfloat16"
    assert model(np.zeros((1, 28, 28, 1), np.uint8)).dtype == "float32"


def _steps(path):
    return [json.loads(line) for line in open(path)]


@pytest.mark.long
def test_two_worker_cluster_matches_a_single_process_step_by_step(tmp_path):
    """Two real worker processes on 127.0.0.1 train the same steps on halves of
    each global batch; their per-step losses equal one process on the whole batch."""
    common = ["apps.mnist", "--smoke", "--model", "mlp", "--batch-size", "64", "--data-source", "mirror",
              "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"), *ONLY_TRAINING]
    # The cluster draws its TensorBoard pictures (predict() in a callback is a collective op there).
    workers = start_cluster(["-m", *common, "--strategy", "multi_worker", "--run-id", "cluster", "--pictures",
                             "every_epoch"])
    # The reference is one process with one replica under MirroredStrategy, not the
    # default strategy: under any strategy Keras 3 builds the model from a batch of
    # a throwaway iterator, so fit's first epoch sees the pipeline's second shuffle.
    single = cli(*common, "--strategy", "mirrored", "--run-id", "single")
    assert "over 1 replica(s) (MirroredStrategy)" in single.stdout
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "2 replica(s)" in outputs[0]

    cluster_steps = _steps(tmp_path / "runs/mnist/cluster/steps.jsonl")
    worker_steps = _steps(tmp_path / "runs/mnist/cluster/steps-worker1.jsonl")
    single_steps = _steps(tmp_path / "runs/mnist/single/steps.jsonl")
    assert len(cluster_steps) == len(single_steps) == 2048 // 64
    losses = [[row["loss"] for row in rows] for rows in (cluster_steps, worker_steps, single_steps)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)  # both workers agree
    np.testing.assert_allclose(losses[0], losses[2], rtol=1e-4)  # and equal one process
    assert losses[0][-1] < losses[0][0]  # and it learned
    from test_cli import _tags

    assert {"sample_predictions", "explanations", "confusion_matrix"} <= _tags(tmp_path / "runs/mnist/cluster/test")
    # Only the chief exported; the cluster's model is version 1 or 2, one of them.
    assert sorted(p.name for p in (tmp_path / "sm/mnist").iterdir()) == ["1", "2"]
    assert "Export:" in outputs[0] and "Export:" not in outputs[1] and "Export:" in single.stdout

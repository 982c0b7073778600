"""--dp (training/privacy.py): DP-SGD's clipping and noise measured on real train steps, on one
device and on a 2-replica MirroredStrategy; the accounting against dp-accounting itself; every
app's DP smoke run under both strategies; models and flags it refuses; a killed DP run resumed."""
import json
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ONLY_TRAINING, ROOT, backup_steps, cli, error_lines, rows, wait_until
from dp_probe import FEATURES, batch as _batch, measure, model as _model, plan as _plan, update as _update
from training import accounting, privacy

def test_clipping_bounds_one_example_s_influence():
    """One example with a huge gradient moves the update by at most clip / expected batch, and
    by exactly that when its gradient is far above the clip; without clipping it moves it far more."""
    strategy = tf.distribute.get_strategy()
    weights = _model(strategy).get_weights()
    x, y = _batch(16)
    huge = np.concatenate([x, 1e4 * np.ones((1, FEATURES), "float32")]), np.concatenate([y, [0]])
    for clip in (0.5, 2.0):
        plan = _plan(clip, 0.0, 17)
        moved = np.linalg.norm(_update(strategy, weights, plan, *huge) - _update(strategy, weights, plan, x, y))
        assert moved == pytest.approx(clip / 17, rel=1e-3)
    unclipped = _plan(1e9, 0.0, 17)
    moved = np.linalg.norm(_update(strategy, weights, unclipped, *huge) - _update(strategy, weights, unclipped, x, y))
    assert moved > 1000 * 2.0 / 17  # the control: the same example unclipped


@pytest.mark.parametrize("replicas", [1, pytest.param(2, marks=pytest.mark.long)])  # 2: DP under MirroredStrategy
def test_noise_has_the_planned_deviation_once_per_global_batch(replicas):
    """noisy update - noiseless update = noise / expected batch: its standard deviation over 24,003
    weights is noise multiplier x clip, on one device and on two replicas alike (noise added on
    both replicas and summed would be sqrt(2) x that); the clipped sum is the same on both, also
    when a batch of one example leaves the second replica none (tests/dp_probe.py)."""
    import subprocess
    import sys

    if replicas == 1:
        measured = measure(tf.distribute.get_strategy())
    else:  # in a process of its own: see dp_probe's docstring
        probe = subprocess.run([sys.executable, str(ROOT / "tests" / "dp_probe.py")], capture_output=True, text=True,
                               cwd=ROOT, timeout=300)
        assert probe.returncode == 0, probe.stderr[-2000:]
        measured = json.loads(probe.stdout.strip().splitlines()[-1])
    assert measured["replicas"] == replicas
    for std, mean in zip(measured["noise_std"], measured["noise_mean"]):
        assert std == pytest.approx(1.3 * 0.5, rel=0.03) and abs(mean) < 0.02
    assert abs(measured["noise_correlation"]) < 0.05  # each model's key is fresh from the OS: no noise repeats
    assert measured["clean_vs_one_device"] < 1e-6 and measured["one_example_vs_one_device"] < 1e-7


def test_float16_loss_scaling_is_undone_before_clipping():
    """Under mixed_float16 the optimizer is a LossScaleOptimizer: per-example gradients arrive
    multiplied by its scale and must be clipped unscaled. With the clip at twice the largest
    per-example norm nothing is clipped; clipping the scaled gradients (x 16) would clip all."""
    strategy = tf.distribute.get_strategy()
    model = _model(strategy)
    weights = model.get_weights()
    x, y = _batch(32)
    norms = []
    for i in range(len(x)):
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y[i:i + 1], model(x[i:i + 1]))
        norms.append(tf.linalg.global_norm(tape.gradient(loss, model.trainable_weights)).numpy())
    plan = _plan(2 * max(norms), 0.0, 32)
    reference = _update(strategy, weights, plan, x, y)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model(strategy, weights)
        model.compile(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1.0), initial_scale=16.0),
                      loss="sparse_categorical_crossentropy")
        privacy.make_private(model, plan)
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0, shuffle=False)
        update = np.concatenate([(a - b).ravel() for a, b in zip(model.get_weights(), weights)])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.linalg.norm(update - reference) < 0.02 * np.linalg.norm(reference)


def test_epsilon_is_dp_accounting_s_and_calibration_meets_the_target():
    import dp_accounting
    from dp_accounting import pld, rdp

    q, steps, delta = 512 / 55_000, 107 * 40, 1e-5
    for kind, fresh in (("pld", pld.PLDAccountant), ("rdp", rdp.RdpAccountant)):
        sigma = accounting.calibrate(kind, q, steps, 3.0, delta)
        accountant = fresh()
        accountant.compose(dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps))
        spent = accountant.get_epsilon(delta)
        assert accounting.epsilon(kind, q, sigma, steps, delta) == pytest.approx(spent, rel=1e-9)
        assert 2.99 <= spent <= 3.0  # the least noise that stays within the target
    assert accounting.default_delta(55_000) == 1e-5 and accounting.default_delta(251) == 1e-3
    assert accounting.default_delta(100_000) == 1e-6  # strictly below 1/N


def _read_scalars(logdir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for events in logdir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0})
        accumulator.Reload()
        if tag in accumulator.Tags()["tensors"]:
            values += [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]
    return sorted(values)


def _check_accounting(run_dir, export, epochs):
    """privacy.json in the export: dp-accounting's epsilon for its own q, noise, steps and delta;
    the run folder's privacy.json says the same; TensorBoard has the epsilon of every epoch."""
    import dp_accounting
    from dp_accounting import pld

    record = json.loads((export / "privacy.json").read_text())
    assert json.loads((run_dir / "privacy.json").read_text()) == record
    assert "privacy" not in json.loads((run_dir / "run_config.json").read_text())  # the settings, written once
    steps = record["steps"]
    accountant = pld.PLDAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        record["sampling_rate"], dp_accounting.GaussianDpEvent(record["noise_multiplier"])), steps))
    assert record["epsilon"] == pytest.approx(accountant.get_epsilon(record["delta"]), abs=2e-4)
    assert record["epsilon"] == pytest.approx(record["epsilon_planned"])
    assert record["epsilon"] <= record["target_epsilon"]
    spent = _read_scalars(run_dir / "train", "epoch_epsilon")
    assert [s for s, _ in spent] == list(range(epochs)) and spent[-1][1] == pytest.approx(record["epsilon"], abs=2e-4)
    assert all(a[1] < b[1] for a, b in zip(spent, spent[1:]))
    return record


SMOKE = ["--smoke", "--dp", "--data-source", "mirror", *ONLY_TRAINING]


@pytest.mark.long
@pytest.mark.parametrize("app,strategy", [(app, "default") for app in ("mnist", "sentiment", "regression", "charlm")]
                         + [("mnist", "mirrored2"), ("sentiment", "mirrored2")])
def test_every_app_trains_with_dp(tmp_path, app, strategy):
    """A DP smoke epoch of every app's DP model (fashion_mnist shares mnist's models) and its
    verified export: under the default strategy in this process, under a 2-replica
    MirroredStrategy in its own (collectives of two such runs in one process collide) for a
    convnet and a text model. (Regression's and charlm's models under two replicas without DP:
    tests/test_apps.py; DP's noise and clipping under two replicas: test_noise_has_the_planned_deviation...)"""
    import contextlib
    import importlib
    import io

    from cli.main import main

    argv = [*SMOKE, "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm")]
    if app == "charlm":  # its LSTM's per-example gradients run in a loop (2 s a step here): 4 steps, not 16
        argv += ["--train-examples", "256"]
    if strategy == "mirrored2":
        printed = cli(f"apps.{app}", *argv, "--strategy", "mirrored", "--cpu-devices", "2").stdout
    else:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(importlib.import_module(f"apps.{app}"), argv) == 0, out.getvalue()[-3000:]
        printed = out.getvalue()
    assert "differential privacy: DP-SGD" in printed and "epsilon:" in printed
    run_dir = next((tmp_path / "runs" / app).glob("*/FINISHED.json")).parent
    export = next(p for p in (tmp_path / "sm").glob("*/1"))
    record = _check_accounting(run_dir, export, epochs=1)
    assert record["not_covered"][-2:] == privacy.ALWAYS_NOT_COVERED
    assert len(record["not_covered"]) == (2 if app == "mnist" else 3)  # the apps that adapt on their data say so


def test_bad_dp_input_is_one_line_and_leaves_nothing(tmp_path):
    logdir = tmp_path / "runs"
    result = cli("apps.mnist", "--smoke", "--dp", "--model", "cnn_bn", "--logdir", str(logdir), check=False)
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "batch normalisation" in line and "--model dp_cnn" in line
    assert not list(logdir.glob("mnist/*")) and "run folder" not in result.stdout  # refused before either

    from cli.parser import parse_config
    import apps.mnist as mnist
    from core.errors import UsageError

    assert parse_config(mnist, ["--dp"]).model == "dp_cnn"  # --dp alone: the app's DP model
    for argv, says in ((["--dp-epsilon", "2"], "add --dp"),
                       (["--dp", "--dp-epsilon", "2", "--dp-noise-multiplier", "1"], "give one"),
                       (["--dp", "--dp-delta", "1.5"], "between 0 and 1"),
                       (["--dp", "--strategy", "multi_worker"], "not available")):
        with pytest.raises(UsageError, match=says):
            parse_config(mnist, argv)


@pytest.mark.long
def test_a_killed_dp_run_resumes_and_its_accounting_counts_every_step(tmp_path):
    """SIGKILL in epoch 2 after a backup; the rerun trains the rest (fresh Poisson draws and
    noise) and its epsilon is that of all the run's steps, epoch by epoch in TensorBoard."""
    from test_resume import start

    steps = 2048 // 64  # smoke: 2,048 training images at an expected batch of 64
    args = ["apps.mnist", *SMOKE, "--epochs", "2", "--batch-size", "64", "--logdir", str(tmp_path / "runs"),
            "--export-dir", str(tmp_path / "sm")]
    proc = start(args)
    run = lambda: next((tmp_path / "runs" / "mnist").glob("*/run_config.json"), tmp_path / "x" / "y").parent  # noqa: E731
    wait_until(lambda: any(s > steps for s in backup_steps(run() / "backup")), proc, "a backup in epoch 2")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (run() / "FINISHED.json").exists()
    result = cli(*args)
    assert "resuming in epoch 2" in result.stdout
    record = _check_accounting(run(), next((tmp_path / "sm").glob("*/1")), epochs=2)
    assert record["steps"] == 2 * steps
    assert max(r["global_step"] for r in rows(run())) == 2 * steps


def test_poisson_batches_take_each_example_independently_with_probability_q():
    """Over 400 steps of 1,000 examples at q = 0.05: batch sizes and per-example counts are
    binomial (mean and spread), epochs differ, and a resumed epoch gives only its remaining steps."""
    from pipelines.input import PoissonBatches

    ds = tf.data.Dataset.from_tensor_slices((np.arange(1000), np.zeros(1000, np.int64)))
    batches = PoissonBatches(ds, expected_batch=50, secret=12345)
    assert batches.steps_per_epoch == 20 and batches.sampling_rate == 0.05
    counts, sizes = np.zeros(1000), []
    for epoch in range(20):
        for features, _ in batches.epoch(epoch):
            sizes.append(len(features))
            counts[features.numpy()] += 1
    assert np.mean(sizes) == pytest.approx(50, abs=1.5) and np.std(sizes) == pytest.approx(np.sqrt(50 * 0.95), rel=0.15)
    assert np.mean(counts) == pytest.approx(20, abs=0.5) and np.var(counts) == pytest.approx(400 * 0.05 * 0.95,
                                                                                             rel=0.15)
    first = [f.numpy().tolist() for f, _ in batches.epoch(0)]
    assert first == [f.numpy().tolist() for f, _ in batches.epoch(0)]  # one process, one epoch: the same draws...
    assert first != [f.numpy().tolist() for f, _ in batches.epoch(1)]  # ...another epoch: others
    assert [f.numpy().tolist() for f, _ in batches.epoch(0, start=15)] == first[15:]
    other = PoissonBatches(ds, expected_batch=50, secret=54321)
    assert first != [f.numpy().tolist() for f, _ in other.epoch(0)]  # another secret (process): other draws

"""The one run function every app shares: devices -> outputs -> data -> model in scope -> fit -> evaluate -> export.

An app is a module with NAME, DEFAULT_MODEL, MODELS, load_data, augment,
serving, serving_inputs, tensorboard_callbacks and details (see apps/mnist.py;
apps/regression.py, apps/sentiment.py and apps/charlm.py also use the optional
add_arguments and check_config hooks of cli/parser.py). Nothing here branches
on which app it is running. Transfer learning (training/transfer.py: Transfer)
and differential privacy (training/privacy.py: Privacy) each reach the loop
through one object, which does nothing when its flags are not given. The
command line (cli/main.py) prints the closing report from what run() returns.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from core import memory
from core.config import ModelSpec, RunConfig
from deployment.export import Exported, Serving, TestSet, export_version
from deployment.litert import REPRESENTATIVE
from core.errors import UsageError
from observation import callbacks as cb
from observation import hparams
from pipelines.input import (PoissonBatches, Splits, TrainingBatches, WorkerShares, evaluation_batches,
                            labelled_subset)
from training import preemption, resume
from training.backups import BackupFolder, Backups, restore_point
from training.precision import cpu_note, resolve_mixed_precision
from training.privacy import Privacy
from training.run_folder import (FINISHED, AlreadyFinished, check_writable, mark_finished, resolve_run_dir,
                                 weights_digest)
from training.strategy import check_fits, describe, in_cluster, is_chief, resolve_strategy, task_label, xla_status
from training.transfer import Transfer

JIT = {"auto": "auto", "on": True, "off": False}
# The test examples LiteRT files and a new version are scored on (deployment/export.py), at most: every
# app's whole test split, and a user's large table a sample of it (its test split is in a random order).
SCORED_TEST_EXAMPLES = 50_000
HISTOGRAMS = 20  # weight histograms in TensorBoard per run, about (every epoch for runs of up to 20 epochs)


class Data(NamedTuple):
    """The app's data for one run, batched by the shared pipelines."""

    splits: Splits
    spec: ModelSpec  # the model it trains
    train: TrainingBatches | PoissonBatches
    validation: tf.data.Dataset
    test: tf.data.Dataset
    steps_per_epoch: int | None  # None: unknown (an endless source)
    serving: Serving  # what the export will serve


class Finished(NamedTuple):
    """What a run leaves (cli/report.py prints it)."""

    results: dict  # test metrics and the app's numeric findings (test_macro_f1, epsilon, ...)
    details: dict  # the app's findings, numbers and text (learned w and b, corpus counts, the DP guarantee)
    run_dir: Path
    serving: Serving  # what the export serves
    exported: Exported  # the published version, or the one the gate held back; nothing on other workers
    weights: str  # sha256 of the trained weights
    chief: bool  # False on the other workers of a multi-worker run, which report nothing


def run(app, config: RunConfig) -> Finished:
    """Train, evaluate and export one model as `config` says."""
    started = time.time()
    memory.keep_large_blocks_apart()  # large freed blocks go back to the system (core/memory.py)

    # ---- Devices. First: --cpu-devices must act before TensorFlow starts its devices,
    # and a strategy that cannot be built should fail before any download.
    strategy = resolve_strategy(config.strategy, config.cpu_devices)
    preemption.requests.reclaim()  # from TensorFlow's multi-worker runtime, which takes SIGTERM over
    check_fits(strategy, config.batch_size, config.steps_per_execution)
    policy = resolve_mixed_precision(config.mixed_precision, strategy)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()  # every op's result depends on its inputs alone
    keras.utils.set_random_seed(config.seed)
    chief = is_chief(strategy)

    # ---- Outputs, checked before any work so a bad path costs a second, not a training run.
    run_dir = resolve_run_dir(config)
    if (run_dir / FINISHED).exists():  # the same command ran to the end before: say where, train nothing
        raise AlreadyFinished(run_dir)
    check_writable(Path(config.export_dir), "--export-dir")
    # Every worker keeps its own backups (and non-chief workers throw their TensorBoard logs away, below).
    backups = BackupFolder(run_dir / ("backup" if chief else f"backup-{task_label(strategy)}"))

    # ---- Data, and --dp's plan (the data size and the steps decide the noise).
    data = load(app, config, strategy)
    dp, transfer = Privacy.for_run(app, config, data), Transfer(config)

    # ---- Where to start: the newest backup (every worker's newest common one), read before any training.
    restore = restore_point(backups, config.record(), strategy, data.steps_per_epoch, data.splits.source)
    start = restore.position if restore else resume.START

    # ---- Model: built and compiled inside the strategy's scope, so its variables are mirrored across
    # replicas. --init-from loads a trained model's matching layers first; --freeze decides what trains
    # in this epoch's phase (training/transfer.py); --dp checks the model and replaces its train step
    # (training/privacy.py). A source that is not a model, or a model DP-SGD cannot train, is refused
    # here: before the run says anything or writes its folder.
    compile_options = dict(jit_compile=JIT[config.xla], steps_per_execution=config.steps_per_execution)
    with strategy.scope():
        model, compile_kwargs = data.spec.build(config, data.splits, data.steps_per_epoch)
        loaded = transfer.load(model)
        transfer.compile(model, compile_kwargs, start.epoch, **compile_options)
        dp.check(model)
        dp.make_private(model)

    # ---- The run says what it is, and writes its folder.
    say(f"{app.NAME}: model {config.model}, {config.epochs} epoch(s), global batch {config.batch_size} over "
        f"{strategy.num_replicas_in_sync} replica(s) ({describe(strategy)}), precision {policy}"
        + (", deterministic" if config.deterministic else ""), cpu_note(policy), f"run folder {run_dir}",
        f"data from {data.splits.source}" + (" (training on train + validation)" if config.include_validation else ""),
        *dp.lines(), *loaded, xla_status(model, config.xla))
    run_dir.mkdir(parents=True, exist_ok=True)
    if chief:
        (run_dir / "run_config.json").write_text(config.to_json())
        for name, content in data.splits.files.items():  # what the data was (a user's table: its split)
            (run_dir / name).write_bytes(content)
    tb_dir = run_dir if chief else Path(tempfile.mkdtemp(prefix="tb-worker-"))
    if restore:
        say(f"resuming {start.describe(data.steps_per_epoch)} from its backup {restore.path}")
        # a backup of another model is refused before any training (and loaded at its start)
        restore.check(model.variables)

    # ---- Train, epoch by epoch from the resume point (training/resume.py).
    backup = Backups(backups, every=config.backup_every, steps_per_epoch=data.steps_per_epoch, record=config.record(),
                     source=data.splits.source, strategy=strategy, stops=preemption.requests, restore=restore)
    callbacks = resume.RunCallbacks(
        run_callbacks(app, config, data, dp, strategy, tb_dir, run_dir, policy, chief) + [backup],  # backups last
        model=model, epochs=transfer.epochs, steps=data.steps_per_epoch, verbose=cb.progress_verbosity())

    def next_epoch(epoch):  # --fine-tune-epochs: the second phase starts with its own compile
        if transfer.switch_phase(model, strategy, compile_kwargs, epoch, **compile_options):
            say("fine-tuning: every loaded layer but batch norm unfrozen, learning rate "
                f"{cb.current_learning_rate(model):.3g}")

    training_started = time.time()
    # A final fit on train + validation has no held-out validation left to report.
    def finish():  # what the trained weights decide (ModelSpec.finish): before the pictures, evaluation, export
        if data.spec.finish is not None:
            say(*data.spec.finish(model, data.splits, config))

    resume.train(model, data.train, None if config.include_validation else data.validation, epochs=transfer.epochs,
                 start=start, callbacks=callbacks, next_epoch=next_epoch, finish=finish)
    training_seconds = time.time() - training_started

    # ---- Evaluate on the held-out test set.
    results = {f"test_{k}": float(v) for k, v in model.evaluate(data.test, return_dict=True, verbose=0).items()}
    # The app's own findings, on every worker: a predict() in them is a collective op in a cluster (only the
    # chief computing them, its predict waited for workers that had finished, and failed).
    details = {**app.details(model, data.splits, config), **dp.details(model)}

    # ---- Save and export. The backups are dropped only once the export is in place, so a kill during
    # export resumes straight to exporting.
    serving, exported = save_and_export(app, config, data, model, dp, run_dir, chief)
    if not chief:
        shutil.rmtree(tb_dir, ignore_errors=True)
        shutil.rmtree(backups.root, ignore_errors=True)
        return Finished(results, {}, run_dir, serving, exported, "", chief=False)

    # ---- Record: the app's own findings, TensorBoard's test scalars and HParams metrics, FINISHED.json.
    numbers = {k: v for k, v in details.items() if isinstance(v, (int, float))}
    step = int(model.optimizer.iterations.numpy())
    tested = {**results, **{k: v for k, v in numbers.items() if not k.startswith("corpus_")}}
    cb.write_scalars(str(run_dir / "test"), tested, step=step)
    hparams.comparison_metrics(run_dir, hparams.hparams_columns(app), app.OBJECTIVE, step, list(tested))
    cb.flush_writers()
    weights = weights_digest(model)
    mark_finished(run_dir, {**results, "wall_seconds": round(time.time() - started, 1),
                            "training_seconds": round(training_seconds, 2), "backup_seconds": round(backup.seconds, 3),
                            "backups_written": backup.written, "weights_sha256": weights, "details": details,
                            "export": str(exported.path or ""), "held": str(exported.held or "")})
    shutil.rmtree(backups.root, ignore_errors=True)
    return Finished({**results, **numbers}, details, run_dir, serving, exported, weights, chief=True)


def save_and_export(app, config: RunConfig, data: Data, model, dp: Privacy, run_dir: Path, chief: bool):
    """(what is served, what export_version did): the model and its files in the run folder, then the next
    version, checked in a fresh process and published or held back (deployment/export.py). Beside the model:
    the files its serving needs (the LM's vocabulary: --init-from reads it) and the guarantee DP-SGD gave its
    weights (privacy.json)."""
    serving = data.serving._replace(files={**data.serving.files, **dp.files(model)})
    if chief:
        model.save(run_dir / "model.keras")
        for name, text in serving.files.items():
            (run_dir / name).write_text(text)
    features, _ = next(iter(data.splits.test.batch(8)))
    exported = export_version(serving, model, config, Path(config.export_dir) / serving.name,
                              served(app, serving)(features), chief=chief, keras_file=run_dir / "model.keras",
                              test=test_set(app, serving, data.splits) if chief else None)
    return serving, exported


def say(*lines: str) -> None:
    """Print the run's progress lines (empty ones are left out)."""
    for line in lines:
        if line:
            print(line, flush=True)


def load(app, config: RunConfig, strategy) -> Data:
    """The app's unbatched splits (fewer training labels with --train-examples), batched; what it serves."""
    splits = app.load_data(config)
    if config.train_examples:  # learn from fewer labels (validation and test unchanged)
        splits = splits._replace(train=labelled_subset(splits.train, config.train_examples, config.seed))
    tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    train, validation, test = build_pipelines(app, config, splits, static_shapes=tpu, strategy=strategy)
    if isinstance(train, WorkerShares):
        print(f"Input: each of the {strategy.num_replicas_in_sync} workers reads only its own rows of every batch",
              flush=True)
    if train.steps_per_epoch == 0:
        raise UsageError(f"--batch-size {config.batch_size} is larger than the training set; use a smaller one")
    return Data(splits, app.MODELS[config.model], train, validation, test,
                train.steps_per_epoch if train.steps_per_epoch > 0 else None, app.serving(config, splits))


def build_pipelines(app, config: RunConfig, splits, static_shapes: bool = False, strategy=None):
    """(training batches, validation, test) for the app's splits.

    Training drops its last partial batch where the device needs static shapes
    (TPU) and where an epoch has at least 100 full batches: there the reshuffle
    makes a different sliver (< 1 %) sit out each epoch, and every step keeps
    a full global batch. On small data sets every example counts: dropping it
    would cost 4 of S3's 100 points and 27 of Auto MPG's 251 cars every epoch.

    strategy: in a multi-worker cluster with one replica per worker, an app whose batches are read or
    decoded by vectorize (files, a table on disk, texts) has each worker do only its rows (WorkerShares).
    """
    augment = app.augment if app.MODELS[config.model].augment else None
    source = splits.train.concatenate(splits.validation) if config.include_validation else splits.train
    examples = int(source.cardinality())
    drop = static_shapes or examples < 0 or examples // config.batch_size >= 100
    if config.dp:  # DP-SGD's accountants assume Poisson-sampled batches (training/privacy.py)
        train = PoissonBatches(source, expected_batch=config.batch_size, secret=int.from_bytes(os.urandom(16), "big"),
                               vectorize=splits.vectorize, augment=augment)
    else:
        train = TrainingBatches(source, global_batch=config.batch_size, seed=config.seed, vectorize=splits.vectorize,
                                augment=augment, drop_remainder=drop, cache=splits.cache, service=config.data_service)
        if in_cluster() and splits.vectorize is not None and not config.data_service \
                and len(strategy.extended.worker_devices) == 1:  # one replica on this worker
            train = WorkerShares(train, strategy)  # each worker reads only its own rows of each batch
    validation, test = (evaluation_batches(ds, global_batch=config.batch_size, vectorize=splits.vectorize,
                                           drop_remainder=static_shapes, cache=splits.cache)
                        for ds in (splits.validation, splits.test))
    return train, validation, test


def run_callbacks(app, config: RunConfig, data: Data, dp: Privacy, strategy, tb_dir: Path, run_dir: Path, policy: str,
                  chief: bool) -> list:
    """Everything a training step reports to: the step log, TensorBoard (Keras' own and the suite's), the
    HParams dashboard, the app's pictures, progress lines, --dp's spent epsilon.

    Every worker runs every callback: predict() inside them is a collective op under
    MultiWorkerMirroredStrategy; non-chief workers write to scratch.
    """
    profile = tuple(int(s) for s in config.profile.split(",")) if config.profile else 0
    return [
        cb.StepLog(run_dir / ("steps.jsonl" if chief else f"steps-{task_label(strategy)}.jsonl")),
        keras.callbacks.TensorBoard(str(tb_dir), histogram_freq=0, write_graph=True, update_freq="epoch",
                                    profile_batch=profile),
        # Weight histograms at most about HISTOGRAMS times a run: each is an eager op per weight, which on a
        # small table's 100 epochs of 4 steps took 40 % of the training time when drawn every epoch.
        cb.WeightHistograms(str(tb_dir / "train"), max(1, config.epochs // HISTOGRAMS)),
        cb.StepScalars(str(tb_dir / "train"), config.log_every),
        cb.OpGraph(str(tb_dir / "train")),
        hparams.HParams(str(tb_dir), trial_id=run_dir.name, values=hparams.hparams_values(
            config, policy, strategy.num_replicas_in_sync, hparams.hparams_columns(app), dp.hparams())),
        *pictures(app.tensorboard_callbacks(str(tb_dir / "test"), data.splits, data.test, config), config.pictures),
        *([cb.PlainProgress(config.log_every, data.steps_per_epoch)] if cb.progress_verbosity() == 2 else []),
        *dp.callbacks(str(tb_dir / "train")),
    ]


def pictures(callbacks: list, when: str) -> list:
    """The app's TensorBoard callbacks, its Pictures drawn as --pictures says."""
    chosen = [c.only(when) if isinstance(c, cb.Pictures) else c for c in callbacks]
    return [c for c in chosen if c is not None]


def test_set(app, serving, splits) -> TestSet:
    """The test examples as serving inputs (what LiteRT files and versions are scored on), and
    REPRESENTATIVE training examples that calibrate int8 LiteRT files."""
    features, targets = next(iter(splits.test.take(SCORED_TEST_EXAMPLES).batch(SCORED_TEST_EXAMPLES)))
    inputs, targets = served(app, serving)(features), np.asarray(targets)
    if serving.test_set is not None:  # e.g. the LM: prompts cut from test texts, and each one's next character
        inputs, targets = serving.test_set(inputs, targets)
    calibration, _ = next(iter(splits.train.take(REPRESENTATIVE).batch(REPRESENTATIVE)))
    return TestSet(inputs, targets, served(app, serving)(calibration))


def served(app, serving: Serving):
    """A batch of split features -> the served inputs: the Serving's own reader, or the app's serving_inputs."""
    return serving.inputs or (lambda features: app.serving_inputs(features))

"""The one run function every app shares: strategy -> data -> model in scope -> fit -> evaluate -> export.

An app is a module with NAME, DEFAULT_MODEL, MODELS, load_data, augment,
serving, serving_inputs, tensorboard_callbacks and details (see apps/mnist.py;
apps/regression.py, apps/sentiment.py and apps/charlm.py also use the
optional add_arguments and check_config hooks of training/config.py).
Nothing here branches on which app it is running.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from errors import UsageError
from pipelines.input import PoissonBatches, TrainingBatches, evaluation_batches, labelled_subset
from training import callbacks as cb
from training import accounting, hparams, preemption, privacy, resume
from training.backups import BackupFolder, Backups, restore_point
from training.config import RunConfig, parse_config
from training.explain import explain_command
from training.export import TestSet, export_version
from training.litert import REPRESENTATIVE
from training.transfer import Transfer
from training.outputs import check_writable, mark_finished, report, resolve_run_dir, weights_digest
from training.precision import cpu_note, resolve_mixed_precision
from training.strategy import (describe, in_cluster, is_chief, lost_worker_message, LOST_WORKER_ERRORS,
                               resolve_strategy, task_label, xla_status)

JIT = {"auto": "auto", "on": True, "off": False}
RESUME_HINT = "rerun the same command to resume from the last backup"


def build_pipelines(app, config: RunConfig, splits, static_shapes: bool = False):
    """(training batches, validation, test) for the app's splits.

    Training drops its last partial batch where the device needs static shapes
    (TPU) and where an epoch has at least 100 full batches: there the reshuffle
    makes a different sliver (< 1 %) sit out each epoch, and every step keeps
    a full global batch. On small data sets every example counts: dropping it
    would cost 4 of S3's 100 points and 27 of Auto MPG's 251 cars every epoch.
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
                                augment=augment, drop_remainder=drop)
    validation, test = (evaluation_batches(ds, global_batch=config.batch_size, vectorize=splits.vectorize,
                                           drop_remainder=static_shapes)
                        for ds in (splits.validation, splits.test))
    return train, validation, test


def run(app, config: RunConfig) -> dict:
    """Train, evaluate and export one model as `config` says; returns the test metrics."""
    started = time.time()

    # ---- Devices. First: --cpu-devices must act before TensorFlow starts its
    # devices, and a strategy that cannot be built should fail before any download.
    strategy = resolve_strategy(config.strategy, config.cpu_devices)
    preemption.requests.reclaim()  # from TensorFlow's multi-worker runtime, which takes SIGTERM over
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UsageError(f"--batch-size {config.batch_size} is not divisible by the {replicas} replicas; "
                         f"use a multiple of {replicas}")
    policy = resolve_mixed_precision(config.mixed_precision, strategy)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()  # every op's result depends on its inputs alone
    keras.utils.set_random_seed(config.seed)
    chief = is_chief(strategy)

    # ---- Outputs, checked before any work so a bad path costs a second, not a training run.
    run_dir = resolve_run_dir(config)
    check_writable(Path(config.export_dir), "--export-dir")
    # Every worker keeps its own backups; non-chief workers throw their TensorBoard logs away.
    backups = BackupFolder(run_dir / ("backup" if chief else f"backup-{task_label(strategy)}"))
    tb_dir = str(run_dir) if chief else tempfile.mkdtemp(prefix="tb-worker-")
    print(f"{app.NAME}: model {config.model}, {config.epochs} epoch(s), global batch {config.batch_size} "
          f"over {replicas} replica(s) ({describe(strategy)}), precision {policy}"
          + (", deterministic" if config.deterministic else ""), flush=True)
    if cpu_note(policy):
        print(cpu_note(policy), flush=True)
    print(f"run folder {run_dir}", flush=True)

    # ---- Data: unbatched examples from the app, batched by the shared pipelines.
    splits = app.load_data(config)
    if config.train_examples:  # --train-examples: learn from fewer labels (validation and test unchanged)
        splits = splits._replace(train=labelled_subset(splits.train, config.train_examples, config.seed))
    spec = app.MODELS[config.model]
    train, validation, test = build_pipelines(app, config, splits, static_shapes=isinstance(strategy, tf.distribute.TPUStrategy))
    if train.steps_per_epoch == 0:
        raise UsageError(f"--batch-size {config.batch_size} is larger than the training set; use a smaller one")
    steps_per_epoch = train.steps_per_epoch if train.steps_per_epoch > 0 else None
    serving = app.serving(config, splits)
    print(f"data from {splits.source}" + (" (training on train + validation)" if config.include_validation else ""), flush=True)
    dp = accounting.plan(config, train.examples, train.steps_per_epoch) if config.dp else None
    if dp:  # a model DP-SGD cannot train is refused here, before the run folder exists
        privacy.check_model(spec.build(config, splits, steps_per_epoch)[0], config.model, app)
        config = dataclasses.replace(config, privacy=privacy.record(dp, 0, app))
        print(dp.describe(), flush=True)
        for leak in config.privacy["not_covered"]:
            print(f"  not covered by epsilon: {leak}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)  # only now: bad input above leaves no empty run behind
    if chief:
        (run_dir / "run_config.json").write_text(config.to_json())

    # ---- Where to start: the newest backup (every worker's newest common one), checked before any training.
    restore = restore_point(backups, config.record(), strategy, steps_per_epoch, splits.source)
    start = restore.position if restore else resume.START
    if restore:
        print(f"resuming {start.describe(steps_per_epoch)} from its backup {restore.path}", flush=True)

    # ---- Model: built and compiled inside the strategy's scope, so its
    # variables are mirrored across replicas. --init-from loads a trained
    # model's matching layers first; --freeze decides what trains in this
    # epoch's phase (training/transfer.py).
    transfer = Transfer(config)
    compile_options = dict(jit_compile=JIT[config.xla], steps_per_execution=config.steps_per_execution)
    with strategy.scope():
        model, compile_kwargs = spec.build(config, splits, steps_per_epoch)
        if config.init_from:
            print(transfer.load(model), flush=True)
        transfer.compile(model, compile_kwargs, start.epoch, **compile_options)
        if dp:
            privacy.make_private(model, dp)
    if xla_status(model, config.xla):
        print(xla_status(model, config.xla), flush=True)
    if restore:
        restore.check(model.variables)  # a backup of another model is refused before any training (and loaded at its start)

    # ---- Train, epoch by epoch from the resume point (training/resume.py).
    progress = cb.progress_verbosity()
    columns = hparams.hparams_columns(app)  # the HParams dashboard's, the same for every run of the app
    backup = Backups(backups, every=config.backup_every, steps_per_epoch=steps_per_epoch, record=config.record(),
                     source=splits.source, strategy=strategy, stops=preemption.requests, restore=restore)
    callbacks = [
        cb.StepLog(run_dir / ("steps.jsonl" if chief else f"steps-{task_label(strategy)}.jsonl")),
        keras.callbacks.TensorBoard(tb_dir, histogram_freq=1, write_graph=True, update_freq="epoch",
                                    profile_batch=tuple(int(s) for s in config.profile.split(",")) if config.profile else 0),
        # Every worker runs every callback: predict() inside them is a collective
        # op under MultiWorkerMirroredStrategy. Non-chief workers write to scratch.
        cb.StepScalars(str(Path(tb_dir) / "train"), config.log_every),
        cb.OpGraph(str(Path(tb_dir) / "train")),
        hparams.HParams(tb_dir, hparams.hparams_values(config, str(policy), replicas, columns), run_dir.name),
        *pictures(app.tensorboard_callbacks(str(Path(tb_dir) / "test"), splits, test, config), config.pictures),
        *([cb.PlainProgress(config.log_every, steps_per_epoch)] if progress == 2 else []),
        *([privacy.Spent(str(Path(tb_dir) / "train"), dp)] if dp else []),
        backup,  # last: a backup at a step comes after everything the step logged
    ]
    callbacks = resume.RunCallbacks(callbacks, model=model, epochs=transfer.epochs, steps=steps_per_epoch, verbose=progress)

    def next_epoch(epoch):  # --fine-tune-epochs: the second phase starts with its own compile
        if transfer.switch_phase(model, strategy, compile_kwargs, epoch, **compile_options):
            print(f"fine-tuning: every loaded layer but batch norm unfrozen, learning rate "
                  f"{cb.current_learning_rate(model):.3g}", flush=True)

    training_started = time.time()
    # A final fit on train + validation has no held-out validation left to report.
    resume.train(model, train, None if config.include_validation else validation, epochs=transfer.epochs,
                 start=start, callbacks=callbacks, next_epoch=next_epoch)
    training_seconds = time.time() - training_started

    # ---- Evaluate on the held-out test set.
    results = model.evaluate(test, return_dict=True, verbose=0)
    results = {f"test_{k}": float(v) for k, v in results.items()}

    # ---- Save and export. The backups are dropped only once the export is in
    # place, so a kill during export resumes straight to exporting.
    if dp:  # the guarantee the trained weights carry, beside them and in the exported version
        config = dataclasses.replace(config, privacy=privacy.record(dp, int(model.optimizer.iterations.numpy()), app))
        serving = serving._replace(files={**serving.files, "privacy.json": json.dumps(config.privacy, indent=2)})
        if chief:  # run_config.json's "privacy" now says what was spent, not only what was planned
            (run_dir / "run_config.json").write_text(config.to_json())
    if chief:
        model.save(run_dir / "model.keras")
        for name, text in serving.files.items():  # e.g. the vocabulary: --init-from this run reads it
            (run_dir / name).write_text(text)
    features, _ = next(iter(splits.test.batch(8)))
    exported = export_version(serving, model, config, Path(config.export_dir) / serving.name, app.serving_inputs(features),
                              chief=chief, keras_file=run_dir / "model.keras",
                              test=test_set(app, serving, splits) if chief else None)
    if not chief:
        shutil.rmtree(tb_dir, ignore_errors=True)
        shutil.rmtree(backups.root, ignore_errors=True)
        return results
    details = app.details(model, splits, config)  # e.g. learned w and b, perplexity against a bigram model
    if dp:  # numbers for TensorBoard and the HParams table, and one line that says what they rest on
        spent = config.privacy
        details.update(epsilon=spent["epsilon"], delta=spent["delta"], privacy=(
            f"DP-SGD, {spent['accountant'].upper()} accountant ({'RDP' if spent['accountant'] == 'pld' else 'PLD'}: "
            f"epsilon {spent.get('epsilon_rdp', spent.get('epsilon_pld')):.4g}), noise multiplier "
            f"{spent['noise_multiplier']:.4g}, clip {spent['l2_clip']:g}, {spent['steps']} Poisson-sampled steps; "
            f"what epsilon does not cover: privacy.json"))
    step = int(model.optimizer.iterations.numpy())
    tested = {**results, **{k: v for k, v in details.items() if isinstance(v, (int, float)) and not k.startswith("corpus_")}}
    cb.write_scalars(str(run_dir / "test"), tested, step=step)
    hparams.comparison_metrics(run_dir, columns, app.OBJECTIVE, step, list(tested))  # the HParams dashboard's metrics
    cb.flush_writers()
    results["wall_seconds"] = round(time.time() - started, 1)
    record = {"training_seconds": round(training_seconds, 2), "backup_seconds": round(backup.seconds, 3),
              "backups_written": backup.written, "weights_sha256": weights_digest(model)}
    mark_finished(run_dir, {**results, **record, "details": details, "export": str(exported.path or ""),
                            "held": str(exported.held or "")})
    shutil.rmtree(backups.root, ignore_errors=True)
    print(report(serving, config, run_dir, results, exported, details, record["weights_sha256"]), flush=True)
    if exported.held:  # trained and checked, but not published: exit HELD_EXIT
        raise HeldBack(exported.lines[-1])
    return {**results, **{k: v for k, v in details.items() if isinstance(v, (int, float))}}


def pictures(callbacks: list, when: str) -> list:
    """The app's TensorBoard callbacks, its Pictures drawn as --pictures says."""
    chosen = [c.only(when) if isinstance(c, cb.Pictures) else c for c in callbacks]
    return [c for c in chosen if c is not None]


def test_set(app, serving, splits) -> TestSet:
    """Every test example as serving inputs (what LiteRT files and versions are scored on), and
    REPRESENTATIVE training examples that calibrate int8 LiteRT files."""
    features, targets = next(iter(splits.test.batch(1 << 30)))
    inputs, targets = app.serving_inputs(features), np.asarray(targets)
    if serving.test_set is not None:  # e.g. the LM: prompts cut from test texts, and each one's next character
        inputs, targets = serving.test_set(inputs, targets)
    calibration, _ = next(iter(splits.train.take(REPRESENTATIVE).batch(REPRESENTATIVE)))
    return TestSet(inputs, targets, app.serving_inputs(calibration))


class HeldBack(Exception):
    """The run finished but the publishing gate kept its version back (training/deployment.py)."""


def main(app, argv=None, action=run) -> int:
    """Command-line entry point of every app: python -m apps.<name> [flags].

    action(app, config) does the work: training by default; apps.charlm passes
    one that generates text instead when asked to (--generate). --explain INPUT
    explains one input with an exported model instead (training/explain.py).
    """
    def work():
        config = parse_config(app, sys.argv[1:] if argv is None else argv)
        if config.explain is not None:  # --explain INPUT (even an empty one, which the app refuses): the newest exported model explains one input; no training
            return explain_command(app, config)
        with preemption.requests.installed(RESUME_HINT):  # SIGTERM and Ctrl-C: a stop at a step (training/preemption.py)
            action(app, config)

    return guarded(work, RESUME_HINT)


# Exit codes (README: "Exit codes"). A stop on a signal exits 128 + its number.
USAGE_EXIT = 2  # bad input: one line on stderr, "error: ..."
LOST_WORKER_EXIT = 69  # EX_UNAVAILABLE: another worker of a multi-worker run died; restart them all
HELD_EXIT = 3  # trained, exported and checked, but held back by the publishing gate (--publish always overrides)


def guarded(work, resume_hint: str) -> int:
    """Runs a command's work: bad input is one line and exit 2; a stop on a
    signal says where it stopped and exits 128 + the signal's number; Ctrl-C
    elsewhere says how to resume and exits 130; a worker lost from a
    multi-worker run is one line and exit 69; a version the publishing gate
    held back is one line and exit 3.
    """
    try:
        work()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_EXIT
    except HeldBack as held:
        print(f"\n{held}", file=sys.stderr)
        return HELD_EXIT
    except preemption.Stopped as stop:
        print(f"\nstopped: {stop.message}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"\ninterrupted: {resume_hint}", file=sys.stderr)
        return 130
    except LOST_WORKER_ERRORS as err:
        if not in_cluster():
            raise
        print(f"error: {lost_worker_message(err)}", file=sys.stderr)
        return LOST_WORKER_EXIT
    return 0

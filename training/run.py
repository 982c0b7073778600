"""The one run function every app shares: strategy -> data -> model in scope -> fit -> evaluate -> export.

An app is a module with NAME, DEFAULT_MODEL, MODELS, load_data, augment,
serving, serving_inputs, tensorboard_callbacks and details (see apps/mnist.py;
apps/regression.py and apps/text.py also use the optional add_arguments,
default_model and check_config hooks of training/config.py). Nothing here
branches on which app it is running.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from pipelines.input import make_pipeline
from training import callbacks as cb
from training.config import RunConfig, UsageError, parse_config
from training.export import export_version
from training.outputs import check_writable, mark_finished, report, resolve_run_dir
from training.strategy import describe, is_chief, resolve_mixed_precision, resolve_strategy, task_label

JIT = {"auto": "auto", "on": True, "off": False}


def build_pipelines(app, config: RunConfig, splits, static_shapes: bool = False):
    """(train, validation, test) batched pipelines for the app's splits.

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
    train = make_pipeline(source, global_batch=config.batch_size, training=True, seed=config.seed,
                          vectorize=splits.vectorize, augment=augment, drop_remainder=drop)
    validation, test = (make_pipeline(ds, global_batch=config.batch_size, training=False, seed=config.seed,
                                      vectorize=splits.vectorize, drop_remainder=static_shapes)
                        for ds in (splits.validation, splits.test))
    return train, validation, test


def run(app, config: RunConfig) -> dict:
    """Train, evaluate and export one model as `config` says; returns the test metrics."""
    started = time.time()

    # ---- Devices. First: --cpu-devices must act before TensorFlow starts its
    # devices, and a strategy that cannot be built should fail before any download.
    strategy = resolve_strategy(config.strategy, config.cpu_devices)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UsageError(f"--batch-size {config.batch_size} is not divisible by the {replicas} replicas; "
                         f"use a multiple of {replicas}")
    policy = resolve_mixed_precision(config.mixed_precision, strategy)
    keras.utils.set_random_seed(config.seed)
    chief = is_chief(strategy)

    # ---- Outputs, checked before any work so a bad path costs a second, not a training run.
    run_dir = resolve_run_dir(config)
    check_writable(Path(config.export_dir), "--export-dir")
    # Non-chief workers keep their own backups and throw their TensorBoard logs away.
    backup_dir = run_dir / ("backup" if chief else f"backup-{task_label(strategy)}")
    tb_dir = str(run_dir) if chief else tempfile.mkdtemp(prefix="tb-worker-")
    resuming = backup_dir.exists()
    print(f"{app.NAME}: model {config.model}, {config.epochs} epoch(s), global batch {config.batch_size} "
          f"over {replicas} replica(s) ({describe(strategy)}), precision {policy}", flush=True)
    print(f"run folder {run_dir}" + (" (resuming from its last backup)" if resuming else ""), flush=True)

    # ---- Data: unbatched examples from the app, batched by the shared pipeline.
    splits = app.load_data(config)
    spec = app.MODELS[config.model]
    train, validation, test = build_pipelines(app, config, splits, static_shapes=isinstance(strategy, tf.distribute.TPUStrategy))
    steps_per_epoch = int(train.cardinality())
    if steps_per_epoch == 0:
        raise UsageError(f"--batch-size {config.batch_size} is larger than the training set; use a smaller one")
    steps_per_epoch = steps_per_epoch if steps_per_epoch > 0 else None
    serving = app.serving(config, splits)
    print(f"data from {splits.source}" + (" (training on train + validation)" if config.include_validation else ""), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)  # only now: bad input above leaves no empty run behind
    if chief:
        (run_dir / "run_config.json").write_text(config.to_json())

    # ---- Model: built and compiled inside the strategy's scope, so its
    # variables are mirrored across replicas.
    with strategy.scope():
        model, compile_kwargs = spec.build(config, splits, steps_per_epoch)
        model.compile(**compile_kwargs, jit_compile=JIT[config.xla], steps_per_execution=config.steps_per_execution)

    # ---- Train.
    progress = cb.progress_verbosity()
    callbacks = [
        cb.StepLog(run_dir / ("steps.jsonl" if chief else f"steps-{task_label(strategy)}.jsonl")),
        keras.callbacks.TensorBoard(tb_dir, histogram_freq=1, write_graph=True, update_freq="epoch",
                                    profile_batch=tuple(int(s) for s in config.profile.split(",")) if config.profile else 0),
        # Keras 3.15 records the step but resumes at the start of the interrupted
        # epoch, with the weights and optimizer state saved mid-epoch.
        keras.callbacks.BackupAndRestore(str(backup_dir), save_freq=config.backup_every,
                                         double_checkpoint=True, delete_checkpoint=False),
        # Every worker runs every callback: predict() inside them is a collective
        # op under MultiWorkerMirroredStrategy. Non-chief workers write to scratch.
        cb.StepScalars(str(Path(tb_dir) / "train"), config.log_every),
        cb.OpGraph(str(Path(tb_dir) / "train")),
        cb.HParams(tb_dir, cb.hparams_values(config), run_dir.name),
        *app.tensorboard_callbacks(str(Path(tb_dir) / "test"), splits, test),
    ]
    if progress == 2:
        callbacks.append(cb.PlainProgress(config.log_every, steps_per_epoch))
    # A final fit on train + validation has no held-out validation left to report.
    model.fit(train, validation_data=None if config.include_validation else validation, epochs=config.epochs, callbacks=callbacks, verbose=progress,
              shuffle=False)  # the pipeline shuffles; this only silences Keras' reminder

    # ---- Evaluate on the held-out test set.
    results = model.evaluate(test, return_dict=True, verbose=0)
    results = {f"test_{k}": float(v) for k, v in results.items()}

    # ---- Save and export. The backup is dropped only once the export is in
    # place, so a kill during export resumes straight to exporting.
    if chief:
        model.save(run_dir / "model.keras")
    features, _ = next(iter(splits.test.batch(8)))
    export_path = export_version(serving, model, config, Path(config.export_dir) / serving.name,
                                 app.serving_inputs(features), chief=chief)
    if not chief:
        shutil.rmtree(tb_dir, ignore_errors=True)
        shutil.rmtree(backup_dir, ignore_errors=True)
        return results
    details = app.details(model, splits, config)  # e.g. learned w and b, perplexity against a bigram model
    cb.write_scalars(str(run_dir / "test"), results, step=int(model.optimizer.iterations.numpy()))
    cb.flush_writers()
    results["wall_seconds"] = round(time.time() - started, 1)
    mark_finished(run_dir, {**results, "details": details, "export": str(export_path)})
    shutil.rmtree(backup_dir, ignore_errors=True)
    print(report(serving, config, run_dir, results, export_path, details), flush=True)
    return {**results, **{k: v for k, v in details.items() if isinstance(v, (int, float))}}


def main(app, argv=None, action=run) -> int:
    """Command-line entry point of every app: python -m apps.<name> [flags].

    action(app, config) does the work: training by default; apps.text passes
    one that generates text instead when asked to (--generate).
    """
    return guarded(lambda: action(app, parse_config(app, sys.argv[1:] if argv is None else argv)),
                   "rerun the same command to resume from the last backup")


USAGE_EXIT = 2  # bad input: one line on stderr, "error: ..."


def guarded(work, resume_hint: str) -> int:
    """Runs a command's work: bad input is one line and exit 2, Ctrl-C says how to resume and exits 130."""
    try:
        work()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_EXIT
    except KeyboardInterrupt:
        print(f"\ninterrupted: {resume_hint}", file=sys.stderr)
        return 130
    return 0

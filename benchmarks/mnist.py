"""MNIST benchmark: the default model and the two seed models, side by side in one run.

    python -m benchmarks.mnist                      # all three models, ~13 min on 2 CPU cores
    python -m benchmarks.mnist --models mlp,cnn     # a subset
    python -m benchmarks.mnist --pipeline-only      # just the tf.data pipeline's own speed

Each model trains with its own default recipe (apps/mnist.py MODELS) on real
MNIST, through the same pipeline and model code as `python -m apps.mnist`,
without TensorBoard or export. After every epoch the test set is evaluated to
find when 99.0 % and 99.5 % are first reached; that evaluation is not counted
in the training time. Host timings here drift by up to 2x between runs, so the
median epoch time and the process CPU seconds are printed beside wall time,
and the models run in one invocation to be compared side by side.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from apps import mnist  # noqa: E402
from pipelines.input import TrainingBatches  # noqa: E402
from training.config import parse_config  # noqa: E402
from training.run import build_pipelines  # noqa: E402

TARGETS = (0.990, 0.995)


def pipeline_speed(splits, batch: int, augment) -> float:
    """Examples per second the training pipeline delivers with no model attached (two epochs)."""
    pipeline = TrainingBatches(splits.train, global_batch=batch, seed=0, augment=augment, drop_remainder=True).reshuffled()
    for _ in pipeline.take(20):  # warm up: threads, cache
        pass
    start, seen = time.perf_counter(), 0
    for _ in range(2):
        for _, labels in pipeline:
            seen += int(labels.shape[0])
    return seen / (time.perf_counter() - start)


class EpochClock(keras.callbacks.Callback):
    """Training-only time per epoch, then a test evaluation outside the clock."""

    def __init__(self, test):
        super().__init__()
        self.test, self.epochs, self.accuracy, self.train_seconds = test, [], [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        self.epochs.append(seconds)
        self.train_seconds += seconds
        accuracy = self.model.evaluate(self.test, verbose=0, return_dict=True)["accuracy"]
        self.accuracy.append((self.train_seconds, accuracy))
        print(f"    epoch {epoch + 1}: {seconds:.1f}s training, test accuracy {accuracy:.4f}", flush=True)


def bench_model(name: str, splits) -> dict:
    config = parse_config(mnist, ["--model", name, "--data-source", "mirror"])
    spec = mnist.MODELS[name]
    keras.utils.set_random_seed(config.seed)
    batches, _, test = build_pipelines(mnist, config, splits)
    steps, train = batches.steps_per_epoch, batches.reshuffled()
    model, compile_kwargs = spec.build(config, splits, steps)
    model.compile(**compile_kwargs)
    clock = EpochClock(test)
    print(f"  {name}: {config.epochs} epochs, batch {config.batch_size}", flush=True)
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(train, epochs=config.epochs, callbacks=[clock], verbose=0, shuffle=False)  # the pipeline shuffles
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    reached = {t: next((s for s, a in clock.accuracy if a >= t), None) for t in TARGETS}
    return {
        "model": name, "epochs": config.epochs, "test_accuracy": clock.accuracy[-1][1],
        "train_seconds": clock.train_seconds, "median_epoch": statistics.median(clock.epochs),
        "examples_per_s": steps * config.batch_size * config.epochs / clock.train_seconds,
        "cpu_seconds": cpu, "wall_with_evals": wall, **{f"to_{t}": s for t, s in reached.items()},
    }


def table(rows) -> str:
    def when(s):
        return f"{s:7.0f}s" if s is not None else "   never"

    lines = ["model    epochs  test acc  to 99.0%  to 99.5%  train s  median epoch  train ex/s  CPU s",
             "-------  ------  --------  --------  --------  -------  ------------  ----------  -----"]
    for r in rows:
        lines.append(f"{r['model']:7s}  {r['epochs']:6d}  {r['test_accuracy']:8.4f}  {when(r['to_0.99'])}  "
                     f"{when(r['to_0.995'])}  {r['train_seconds']:7.0f}  {r['median_epoch']:11.1f}s  "
                     f"{r['examples_per_s']:10.0f}  {r['cpu_seconds']:5.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn_bn,cnn,mlp", help="comma-separated MODELS names")
    parser.add_argument("--pipeline-only", action="store_true", help="measure the input pipeline alone")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in mnist.MODELS]
    if unknown:
        print(f"error: unknown model(s) {unknown}; choose from {list(mnist.MODELS)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    splits = mnist.load_data(parse_config(mnist, ["--data-source", "mirror"]))
    print(f"data: {splits.source}; {os.cpu_count()} CPU cores; TensorFlow {tf.__version__}, Keras {keras.__version__}")
    print(f"pipeline alone, batch 128: {pipeline_speed(splits, 128, None):,.0f} examples/s plain, "
          f"{pipeline_speed(splits, 128, mnist.augment):,.0f} examples/s with shift augmentation", flush=True)
    if args.pipeline_only:
        return 0
    rows = [bench_model(name, splits) for name in names]
    print()
    print(table(rows))
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f}s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

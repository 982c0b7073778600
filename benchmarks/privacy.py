"""Privacy benchmark: what --dp (DP-SGD, training/privacy.py) costs in accuracy and in time.

    python -m benchmarks.privacy                       # every part (about 1 h on 2 CPU cores)
    python -m benchmarks.privacy --part mnist --seeds 0,1,2
    python -m benchmarks.privacy --part cost           # a DP step against a normal step, same model

mnist: the DP model (dp_cnn, its own epochs, batch and rate) at epsilon 3
  for each seed, and at epsilon 1.2 for the first, all at delta 1e-5
  (1/N = 1/55,000); TensorFlow Privacy's tutorial reports 95.0 % at epsilon
  1.2 and 96.6 % at 2.92, Papernot et al. 2020 98.1 % at 2.93.
sentiment: the default bag model without DP, and with DP at epsilon 3 and 8
  (the bag made smaller for DP: SENTIMENT_DP below).
regression: the default ensemble without DP, and with DP at epsilon 3 and 8
  (251 training cars: delta 1e-3; REGRESSION_DP below).
cost: seconds per step of the same model and batch, normal and DP, median of
  repeated fits over the same in-memory batches, side by side in one process.

Every run is the app's own run (Poisson-sampled pipeline, fit, evaluate,
verified export into a scratch folder); epsilon is what the run reports
(privacy.json, PLD accountant, RDP beside it). Figures: test accuracy (MAE
for regression), printed as a table and appended to --log.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from apps import mnist, regression, sentiment  # noqa: E402
from training.config import parse_config  # noqa: E402
from training.run import run  # noqa: E402

# DP runs of the text and regression apps: their default models, sized for DP-SGD by flags. The
# default bag's 3.2 million weights make each example's gradient 13 MB and drown it in noise
# spread over all of them; 5,000 word n-grams into 32 units are 160,000 weights, and a batch of
# 1,024 divides the noise by more examples. Auto MPG's 251 cars: batches of 64, 50 epochs.
SENTIMENT_DP = ["--max-tokens", "5000", "--char-tokens", "0", "--batch-size", "1024", "--epochs", "10",
                "--learning-rate", "0.01", "--hparams", str(Path(__file__).with_name("privacy_bag.json"))]
REGRESSION_DP = ["--batch-size", "64", "--epochs", "50"]
QUIET = ["--litert", "none", "--pictures", "none", "--publish", "always", "--data-source", "mirror", "--fresh"]


def one_run(app, argv: list[str], workdir: str, log: Path) -> dict:
    config = parse_config(app, [*argv, *QUIET, "--logdir", f"{workdir}/runs", "--export-dir", f"{workdir}/export"])
    started = time.perf_counter()
    with open(log, "a") as out, contextlib.redirect_stdout(out):
        print(f"\n==== {app.NAME} {' '.join(argv)}", flush=True)
        results = run(app, config)
    results["seconds"] = time.perf_counter() - started
    return results


def row(app, argv, results) -> str:
    metric = "test_mae" if app is regression else "test_accuracy"
    privacy = (f"epsilon {results['epsilon']:.3g} (delta {results['delta']:g})" if "epsilon" in results else "no DP")
    extra = f" test_macro_f1={results['test_macro_f1']:.4f}" if "test_macro_f1" in results else ""
    line = (f"{app.NAME:10s} {' '.join(argv):60s} {metric}={results[metric]:.4f}{extra}  {privacy:26s} "
            f"{results['seconds']:.0f} s")
    print(line, flush=True)
    return line


def part_mnist(seeds, workdir, log):
    scores = []
    for seed in seeds:
        argv = ["--dp", "--dp-epsilon", "3", "--seed", str(seed)]
        results = one_run(mnist, argv, workdir, log)
        row(mnist, argv, results)
        scores.append(results["test_accuracy"])
    print(f"mnist dp_cnn at epsilon 3: mean test accuracy {statistics.mean(scores):.4f} over seeds {seeds} "
          f"({', '.join(f'{s:.4f}' for s in scores)})", flush=True)
    argv = ["--dp", "--dp-epsilon", "1.2", "--seed", str(seeds[0])]
    row(mnist, argv, one_run(mnist, argv, workdir, log))


def part_against_default(app, dp_argv, workdir, log):
    """The app's default without DP, then with DP at epsilon 3 and 8."""
    row(app, [], one_run(app, [], workdir, log))
    for target in ("3", "8"):
        argv = ["--dp", "--dp-epsilon", target, *dp_argv]
        row(app, argv, one_run(app, argv, workdir, log))


def part_cost(repeats: int = 5):
    """Seconds per step, normal and DP, for each app's DP model at its batch size."""
    import numpy as np
    import tensorflow as tf

    from training import accounting, privacy
    from training.config import parse_config as parse

    for app, argv in ((mnist, ["--dp"]), (sentiment, ["--dp"]), (regression, ["--dp"])):
        config = parse(app, [*argv, "--data-source", "mirror"])
        splits = app.load_data(config)
        batch = next(iter(splits.train.batch(config.batch_size)))
        if splits.vectorize is not None:
            batch = splits.vectorize(*batch)
        data = tf.data.Dataset.from_tensors(batch).repeat(10).cache()
        timings = {}
        for dp in (False, True):
            model, kwargs = app.MODELS[config.model].build(config, splits, 100)
            model.compile(**kwargs)
            if dp:
                privacy.make_private(model, accounting.Plan(1.0, 1.0, 1e-5, 10 ** 5, config.batch_size, 100, 1, "pld", None))
            model.fit(data, epochs=1, verbose=0)  # traced
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                model.fit(data, epochs=1, verbose=0)
                seconds.append((time.perf_counter() - started) / 10)
            timings[dp] = (statistics.median(seconds), min(seconds))
        (normal, normal_min), (private, private_min) = timings[False], timings[True]
        print(f"cost {app.NAME:10s} {config.model:8s} batch {config.batch_size:4d} "
              f"{int(np.sum([np.prod(w.shape) for w in model.trainable_weights])):>9,d} weights: normal step "
              f"{1000 * normal:7.1f} ms (min {1000 * normal_min:.1f}), DP step {1000 * private:7.1f} ms "
              f"(min {1000 * private_min:.1f}): {private / normal:.1f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "mnist", "sentiment", "regression", "cost"), default="all")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", default="", help="scratch folder for runs and exports (default: a temporary one)")
    parser.add_argument("--log", default="benchmark-privacy.log", help="every run's own output goes here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    log = Path(args.log).resolve()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or scratch
        print(f"runs under {workdir}; their output in {log}", flush=True)
        if args.part in ("all", "cost"):
            part_cost()
        if args.part in ("all", "mnist"):
            part_mnist(seeds, workdir, log)
        if args.part in ("all", "sentiment"):
            part_against_default(sentiment, SENTIMENT_DP, workdir, log)
        if args.part in ("all", "regression"):
            part_against_default(regression, REGRESSION_DP, workdir, log)


if __name__ == "__main__":
    main()

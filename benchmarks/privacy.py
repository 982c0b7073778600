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
import statistics
import tempfile
import time
from pathlib import Path

from apps import mnist, regression, sentiment
from benchmarks import harness

# DP runs of the text and regression apps: their default models, sized for DP-SGD by flags. The
# default bag's 3.2 million weights make each example's gradient 13 MB and drown it in noise
# spread over all of them; 5,000 word n-grams into 32 units are 160,000 weights, and a batch of
# 1,024 divides the noise by more examples. Auto MPG's 251 cars: batches of 64, 50 epochs.
SENTIMENT_DP = ["--max-tokens", "5000", "--char-tokens", "0", "--batch-size", "1024", "--epochs", "10",
                "--learning-rate", "0.01", "--hparams", str(Path(__file__).with_name("privacy_bag.json"))]
REGRESSION_DP = ["--batch-size", "64", "--epochs", "50"]


def one_run(app, argv: list[str], workdir: str, log: Path) -> dict:
    """One run of the app (benchmarks/harness.py, without LiteRT files or pictures; its output into the log): a row."""
    result = harness.run_app(app, argv, workdir, log=log)
    metric = "test_mae" if app is regression else "test_accuracy"
    row = {"app": app.NAME, "flags": " ".join(argv), "metric": metric, "value": result.results[metric],
           "macro_f1": result.results.get("test_macro_f1"), "epsilon": result.results.get("epsilon"),
           "delta": result.results.get("delta"), "seconds": result.seconds}
    privacy = f"epsilon {row['epsilon']:.3g} (delta {row['delta']:g})" if row["epsilon"] else "no DP"
    print(f"{app.NAME:10s} {row['flags']:60s} {metric}={row['value']:.4f}  {privacy:26s} {row['seconds']:.0f} s",
          flush=True)
    return row


def part_mnist(seeds, workdir, log) -> list[dict]:
    rows = [one_run(mnist, ["--dp", "--dp-epsilon", "3", "--seed", str(seed)], workdir, log) for seed in seeds]
    return rows + [one_run(mnist, ["--dp", "--dp-epsilon", "1.2", "--seed", str(seeds[0])], workdir, log)]


def part_against_default(app, dp_argv, workdir, log) -> list[dict]:
    """The app's default without DP, then with DP at epsilon 3 and 8."""
    return [one_run(app, [], workdir, log)] + [one_run(app, ["--dp", "--dp-epsilon", target, *dp_argv], workdir, log)
                                               for target in ("3", "8")]


def part_cost(repeats: int = 5) -> list[dict]:
    """Seconds per step, normal and DP, for each app's DP model at its batch size, side by side in this process."""
    import numpy as np
    import tensorflow as tf

    from cli.parser import parse_config
    from training import accounting, privacy

    rows = []
    for app, argv in ((mnist, ["--dp"]), (sentiment, ["--dp"]), (regression, ["--dp"])):
        config = parse_config(app, [*argv, "--data-source", "mirror"])
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
                plan = accounting.Plan(1.0, 1.0, 1e-5, 10 ** 5, config.batch_size, 100, 1, "pld", None)
                privacy.make_private(model, plan)
            model.fit(data, epochs=1, verbose=0)  # traced
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                model.fit(data, epochs=1, verbose=0)
                seconds.append((time.perf_counter() - started) / 10)
            timings[dp] = statistics.median(seconds)
        rows.append({"app": app.NAME, "model": config.model, "batch": config.batch_size,
                     "weights": int(np.sum([np.prod(w.shape) for w in model.trainable_weights])),
                     "normal_ms": 1000 * timings[False], "dp_ms": 1000 * timings[True]})
        print(f"cost {app.NAME:10s} {config.model:8s} batch {config.batch_size:4d}: normal step "
              f"{rows[-1]['normal_ms']:.1f} ms, DP step {rows[-1]['dp_ms']:.1f} ms", flush=True)
    return rows


def markdown(record: dict) -> str:
    """The table of a --json record (python -m benchmarks.results)."""
    rows = record["rows"]
    if record["benchmark"] == "privacy-cost":
        lines = ["| app | model | batch | weights | normal step ms | DP step ms | DP / normal |",
                 "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['app']} | `{r['model']}` | {r['batch']} | {r['weights']:,} | {r['normal_ms']:.1f} | "
                  f"{r['dp_ms']:.1f} | {r['dp_ms'] / r['normal_ms']:.1f}x |" for r in rows]
        return "\n".join(lines)
    lines = ["| app | flags | test result | epsilon (delta) |", "|---|---|---|---|"]
    for r in rows:
        value = f"MAE {r['value']:.3f} mpg" if r["metric"] == "test_mae" else f"{100 * r['value']:.2f} %"
        value += f" (macro-F1 {100 * r['macro_f1']:.2f} %)" if r.get("macro_f1") is not None else ""
        privacy = f"{r['epsilon']:.3g} ({r['delta']:g})" if r.get("epsilon") else "no DP"
        lines.append(f"| {r['app']} | `{r['flags'] or '(the default)'}` | {value} | {privacy} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "mnist", "sentiment", "regression", "cost"), default="all")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", default="", help="scratch folder for runs and exports (default: a temporary one)")
    parser.add_argument("--log", default="benchmark-privacy.log", help="every run's own output goes here")
    parser.add_argument("--json", metavar="DIR", help="also write the rows as DIR/privacy-runs.json and "
                        "DIR/privacy-cost.json (python -m benchmarks.results)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    log = Path(args.log).resolve()
    command = harness.command("benchmarks.privacy", argv)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or scratch
        print(f"runs under {workdir}; their output in {log}", flush=True)
        if args.part in ("all", "cost"):
            cost = part_cost()
            print("\n" + markdown({"benchmark": "privacy-cost", "rows": cost}) + "\n", flush=True)
            harness.write_json(args.json, "privacy-cost", command, cost)
        if args.part in ("all", "mnist"):
            runs += part_mnist(seeds, workdir, log)
        if args.part in ("all", "sentiment"):
            runs += part_against_default(sentiment, SENTIMENT_DP, workdir, log)
        if args.part in ("all", "regression"):
            runs += part_against_default(regression, REGRESSION_DP, workdir, log)
    if runs:
        print("\n" + markdown({"benchmark": "privacy-runs", "rows": runs}), flush=True)
        harness.write_json(args.json, "privacy-runs", command, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

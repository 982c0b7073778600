"""Every app's default export, served every way it can be: one table for docs/results.md.

    python -m benchmarks.serving                         # trains what is missing: ~40 min on 2 CPU cores
    python -m benchmarks.serving --export-dir DIR --apps mnist,regression

For each app it takes the newest version of its default model under
--export-dir, or first trains one with the app's own default command
(`python -m apps.<app> --data-source mirror`, real data). Then, in a fresh
process per app, on that app's real test split as raw serving inputs:
  SavedModel b1 / b256   serving_default of tf.saved_model.load, per call
                         (batch 256: per call and per example)
  model.predict b1       the Keras model (model.keras) at batch 1, per call
  LiteRT b1             each kept .tflite file in ai-edge-litert (one thread),
                         in a process without TensorFlow, after
                         preprocessing.json's recipe, the files taking turns
                         for ROUNDS rounds
and from the version's evaluation.json, measured by the export's own fresh
process on the whole test set: each LiteRT file's size and its metric against
the SavedModel's.
Latencies are medians (p50) and 99th percentiles over calls on different
examples. The MNIST LiteRT targets (int8 at most a third of float32's size,
within 0.1 point of the SavedModel, batch-1 p50 at most 0.05 ms) are checked
and printed at the end. Default models are trained through
benchmarks/harness.py.
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import harness

ROOT = Path(__file__).resolve().parent.parent
APPS = ("mnist", "fashion_mnist", "regression", "sentiment", "charlm")
CALLS = 300  # batch-1 calls per measurement (different test examples)
ROUNDS = 5  # LiteRT files take turns, CALLS calls each per round
MNIST_TARGETS = "int8 file <= 1/3 of float32, within 0.1 point of the SavedModel's accuracy, batch-1 p50 <= 0.05 ms"


def newest(export_dir: Path, app: str) -> Path | None:
    """The newest version of the app's default model, fully trained, under EXPORT_DIR/export/<app>."""
    base = export_dir / "export" / app  # every app's default model serves under the app's name
    versions = sorted((int(p.name) for p in base.iterdir() if p.name.isdigit()), reverse=True) if base.exists() else []
    for version in versions:
        config = json.loads((base / str(version) / "run_config.json").read_text())
        if config["model"] == importlib.import_module(f"apps.{app}").DEFAULT_MODEL and not config["smoke"]:
            return base / str(version)
    return None


def train(app: str, export_dir: Path) -> None:
    """The app's default command on the offline mirror (benchmarks/harness.py), in a process of its own."""
    print(f"training {app}'s default model into {export_dir}", flush=True)
    harness.run_app(app, [], export_dir, quiet=False, process=True)


def timed(fn, calls) -> np.ndarray:
    seconds = []
    for call in calls:
        start = time.perf_counter()
        fn(call)
        seconds.append(time.perf_counter() - start)
    return np.array(seconds)


def measure(app_name: str, version: str) -> dict:
    """The fresh process: the test split as serving inputs, timed through the SavedModel and model.predict."""
    import keras
    import tensorflow as tf

    from deployment import phone_inputs
    from cli.parser import parse_config
    from training.run import test_set

    app, version = importlib.import_module(f"apps.{app_name}"), Path(version)
    saved = json.loads((version / "run_config.json").read_text())
    config = parse_config(app, ["--model", saved["model"], "--data-source", "mirror"])
    config.options = saved["options"]
    splits = app.load_data(config)
    test = test_set(app, app.serving(config, splits), splits)
    rows = len(test.targets)
    fn = tf.saved_model.load(str(version)).signatures["serving_default"]
    one = [{k: tf.constant(v[i:i + 1]) for k, v in test.inputs.items()} for i in range(min(CALLS, rows))]
    big = [{k: tf.constant(v[i:i + 256]) for k, v in test.inputs.items()} for i in range(0, min(rows, 256 * 20), 256)]
    fn(**one[0]), fn(**big[0])  # traced and warm
    b1, b256 = timed(lambda x: fn(**x), one), timed(lambda x: fn(**x), big)

    model = keras.saving.load_model(version / "model.keras")
    spec = json.loads((version / "litert" / "preprocessing.json").read_text())
    prepared = phone_inputs.prepare(spec, {k: v[:len(one)] for k, v in test.inputs.items()})
    names = [i.name for i in model.inputs]
    if set(names) <= set(prepared) and spec["inputs"][names[0]]["type"] != "raw":
        source = {n: prepared[n] for n in names}  # the Keras model takes the vectorised text
    elif set(names) <= set(test.inputs):
        source = {n: test.inputs[n][:len(one)] for n in names}  # raw features (Auto MPG)
    else:
        source = {names[0]: next(iter(test.inputs.values()))[:len(one), ..., None]}  # images: [B, 28, 28, 1]
    # Strings as tensors: predict() cannot take NumPy object arrays (the car names).
    calls = [{k: tf.constant(v[i:i + 1]) if v.dtype == object else v[i:i + 1] for k, v in source.items()}
             for i in range(len(one))]
    model.predict(calls[0], verbose=0)
    predict = timed(lambda x: model.predict(x, verbose=0), calls)
    # LiteRT again, in a process of its own without TensorFlow (as on a phone: TF's idle
    # thread pools slowed the full-integer file by up to 60 % beside them).
    full = phone_inputs.prepare(spec, {k: v[:len(one)] for k, v in test.inputs.items()})
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/inputs.npz", **full)
        result = subprocess.run([sys.executable, "-m", "benchmarks.serving", "--litert-only", str(version / "litert"),
                                 f"{tmp}/inputs.npz"], capture_output=True, text=True, check=True, cwd=ROOT)
    lite = json.loads(result.stdout.strip().splitlines()[-1])
    ms = lambda s, q: round(float(np.percentile(s, q)) * 1e3, 4)  # noqa: E731
    sizes = sum(p.stat().st_size for p in version.rglob("*") if p.is_file() and "litert" not in p.parts
                and p.name != "model.keras")
    return {"examples": rows, "savedmodel_bytes": sizes,
            "savedmodel_b1": [ms(b1, 50), ms(b1, 99)], "savedmodel_b256": [ms(b256, 50), ms(b256, 99)],
            "big_batch": min(rows, 256),  # Auto MPG's test split has 78 cars: one batch of 78
            "savedmodel_b256_per_example": round(float(np.median(b256)) * 1e3 / min(rows, 256), 4),
            "predict_b1": [ms(predict, 50), ms(predict, 99)],
            "litert_b1": lite}


def litert_only(folder: str, inputs: str) -> dict:
    """Every .tflite file in folder at batch 1 on the prepared inputs, the files taking turns for ROUNDS rounds."""
    from deployment.litert import Runner

    with np.load(inputs) as data:
        feeds = dict(data)
    runners = {f.stem.removeprefix("model_"): Runner(f) for f in sorted(Path(folder).glob("*.tflite"))}
    seconds = {name: [] for name in runners}
    for _ in range(ROUNDS):
        for name, runner in runners.items():
            seconds[name].append(runner.one_by_one({k: feeds[k] for k in runner.inputs})[1])
    return {name: [round(float(np.percentile(np.concatenate(t), q)) * 1e3, 4) for q in (50, 99)]
            for name, t in seconds.items()}


def table(app: str, evaluation: dict, timings: dict) -> list[str]:
    kind, reference = evaluation["metric"][0], evaluation["savedmodel"]["score"]
    fmt = (lambda v: f"{v:.2%}") if kind == "accuracy" else (lambda v: f"{v:.4f}")  # noqa: E731
    lines = [f"| {app} | SavedModel b1 | {timings['savedmodel_bytes'] / 1024:,.0f} KB | "
             f"{timings['savedmodel_b1'][0]:.3f} / {timings['savedmodel_b1'][1]:.3f} | {kind} {fmt(reference)} |",
             f"| | SavedModel b{timings['big_batch']} (per call; per example "
             f"{timings['savedmodel_b256_per_example']:.4f}) | | {timings['savedmodel_b256'][0]:.3f} / "
             f"{timings['savedmodel_b256'][1]:.3f} | |",
             f"| | model.predict b1 | | {timings['predict_b1'][0]:.3f} / {timings['predict_b1'][1]:.3f} | |"]
    for variant, entry in evaluation["litert"].items():
        if "score" not in entry:
            lines.append(f"| | LiteRT {variant} | | | not made: {entry.get('error', '')[:80]} |")
            continue
        change = (entry["score"] - reference) * 100 if kind == "accuracy" else (entry["score"] / reference - 1) * 100
        unit = "points" if kind == "accuracy" else "%"
        # not kept: export-time figures
        p50, p99 = timings["litert_b1"].get(variant, (entry["p50_ms"], entry["p99_ms"]))
        lines.append(f"| | LiteRT {variant}{'' if entry['kept'] else ' (not kept)'} | {entry['bytes'] / 1024:,.0f} KB "
                     f"| {p50:.4f} / {p99:.4f} | {fmt(entry['score'])} ({change:+.2f} {unit}) |")
    return lines


def mnist_targets(evaluation: dict, timings: dict) -> list[str]:
    """The MNIST LiteRT targets, for the full-integer file and for the dynamic-range one (int8 weights)."""
    entries, reference = evaluation["litert"], evaluation["savedmodel"]["score"]
    lines = []
    for variant in ("int8", "dynamic_range"):
        entry = entries.get(variant, {})
        if "score" not in entry or variant not in timings["litert_b1"]:
            lines.append(f"MNIST {variant}: not kept ({entry.get('error', 'over the tolerance')}): targets not met")
            continue
        p50 = timings["litert_b1"][variant][0]
        checks = [("size <= 1/3 of float32", entry["bytes"] <= entries["float32"]["bytes"] / 3,
                   f"{entry['bytes'] / entries['float32']['bytes']:.3f} of it"),
                  ("within 0.1 point of the SavedModel", abs(entry["score"] - reference) <= 0.001,
                   f"{(entry['score'] - reference) * 100:+.2f} points"),
                  ("batch-1 p50 <= 0.05 ms", p50 <= 0.05, f"{p50:.4f} ms")]
        lines += [f"MNIST {variant} {name}: {'met' if ok else 'NOT met'} ({value})" for name, ok, value in checks]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-dir", default="benchmark-exports",
                        help="where default models are found (EXPORT_DIR/export/<app>) or trained")
    parser.add_argument("--json", metavar="DIR", help="also write the rows as DIR/serving.json "
                                                      "(python -m benchmarks.results)")
    parser.add_argument("--apps", default=",".join(APPS))
    parser.add_argument("--measure", nargs=2, metavar=("APP", "VERSION"), help=argparse.SUPPRESS)  # the fresh process
    parser.add_argument("--litert-only", nargs=2, metavar=("FOLDER", "INPUTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.litert_only:
        print(json.dumps(litert_only(*args.litert_only)))
        return 0
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    export_dir = Path(args.export_dir)
    rows = {}
    for app in args.apps.split(","):
        if newest(export_dir, app) is None:
            train(app, export_dir)
        version = newest(export_dir, app)
        print(f"measuring {app} {version}", flush=True)
        result = subprocess.run([sys.executable, "-m", "benchmarks.serving", "--measure", app, str(version)], cwd=ROOT,
                                capture_output=True, text=True, check=True)
        evaluation = json.loads((version / "evaluation.json").read_text())
        rows[app] = {"version": str(version), "timings": json.loads(result.stdout.strip().splitlines()[-1]),
                     "evaluation": {k: evaluation[k] for k in ("metric", "savedmodel", "litert")}}
    print("\n" + markdown({"rows": rows}))
    harness.write_json(args.json, "serving", harness.command("benchmarks.serving", argv), rows)
    return 0


def markdown(record: dict) -> str:
    """The table of a --json record (python -m benchmarks.results), and the MNIST targets."""
    rows = record["rows"]
    lines = ["| app | how | size | batch latency p50 / p99 (ms) | test metric |", "|---|---|---|---|---|"]
    for app, row in rows.items():
        lines += table(app, row["evaluation"], row["timings"])
    if "mnist" in rows:
        lines += ["", *(f"- {line}" for line in mnist_targets(rows["mnist"]["evaluation"], rows["mnist"]["timings"]))]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

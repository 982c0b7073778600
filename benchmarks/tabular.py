"""Tables benchmark: `python -m apps.tabular`'s default against the usual peers, on real tables, same splits.

    pip install -r requirements.txt                  # palmerpenguins, vega_datasets, scikit-learn
    python -m benchmarks.tabular                     # 6 tables x 3 seeds, about 40 min on 2 CPU cores
    python -m benchmarks.tabular --tables penguins,cars --seeds 0
    python -m benchmarks.tabular --scale-gb 1        # only the scale rows: a 1 GB CSV, one epoch
    python -m benchmarks.tabular --hparams l2.json   # the suite with other hyperparameters (a variant)

Tables (benchmarks/tables.py): penguins, cars (vega's Auto MPG with its missing
values), seattle_weather, and scikit-learn's breast_cancer, wine and diabetes.
Every seed is a split (the app's own: stratified, 70/15/15, from --seed) and a
training run; every peer trains on the same training rows, scored on the same
test rows:
  - HistGradientBoosting (scikit-learn, default settings; categories as its
    categorical features, text as TF-IDF columns, dates as days);
  - a linear model: logistic regression or ridge on standardised numbers with
    missing flags, one-hot categories and TF-IDF text;
  - the keras.io "Structured data classification with FeatureSpace" recipe:
    FeatureSpace (float_normalized numbers, string_categorical strings),
    Dense 32 relu, Dropout 0.5, Adam, 20 epochs, batch 32; a softmax for
    several classes and a linear output with MSE for regression; NaN numbers
    filled with the training mean (the recipe's data has none).
And `python -m apps.regression` (the Auto MPG app) on its own clean cars, as a
reference for the cars row. Accuracy (classification) or MAE (regression): the
mean and spread over seeds, with the fit time.

--scale-gb G: a CSV of at least G GB made by repeating seattle_weather's rows
with noise, read and trained for one epoch (global batch 4096) in a fresh
process at a tenth of G and at G: rows/s of the reading pass and of training,
and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from apps import regression, tabular, tabular_data, tabular_statistics
from benchmarks import harness, tables
from cli.parser import parse_config
from pipelines import splits as splitting

PEERS = ("HistGradientBoosting", "linear", "keras.io FeatureSpace")


# ---- The same rows, for the peers -------------------------------------------------

def prepared_for(path: Path, target: str, seed: int, data_dir: str):
    config = parse_config(tabular, ["--data", str(path), "--target", target, "--seed", str(seed), "--data-dir",
                                    data_dir])
    return tabular_data.prepare(config, say=lambda *a: None)


def columns_of(prepared, code: int) -> tuple[dict, np.ndarray]:
    """{column: values} of one split's rows (numbers and dates' days as float, categories as codes with -1
    missing, text as strings) and the labels."""
    table, assigned = prepared.tables[0], prepared.assignment[0]
    rows = np.flatnonzero(assigned == code)
    out = {}
    for c in prepared.inputs:
        if c.kind == "number":
            out[c.name] = np.asarray(table.numbers(c.name))[rows].astype(np.float64)
        elif c.kind == "date":
            days = np.array([tabular_statistics.iso_days(v) for v in table.values(c.name)] + [np.nan, np.nan])
            out[c.name] = days[np.asarray(table.codes(c.name))[rows]]
        elif c.kind == "text":
            out[c.name] = table.texts(c.name, rows)
        else:
            out[c.name] = np.asarray(table.codes(c.name))[rows].astype(np.int64)
    return out, tabular_data.labels(table, prepared.target.name, prepared.classes)[rows]


def design(prepared, train: dict, other: dict, one_hot: bool):
    """Feature matrices for scikit-learn: numbers (NaN kept for boosting; median-imputed, flagged and
    standardised for the linear model), categories (codes, or one-hot), text (TF-IDF)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import OneHotEncoder

    blocks_train, blocks_other, categorical = [], [], []
    for c in prepared.inputs:
        a, b = train[c.name], other[c.name]
        if c.kind in ("number", "date"):
            if one_hot:
                median = np.nanmedian(a) if np.isfinite(a).any() else 0.0
                fa, fb = np.where(np.isnan(a), median, a), np.where(np.isnan(b), median, b)
                mean, scale = fa.mean(), fa.std() or 1.0
                blocks_train += [((fa - mean) / scale)[:, None], np.isnan(a)[:, None].astype(float)]
                blocks_other += [((fb - mean) / scale)[:, None], np.isnan(b)[:, None].astype(float)]
            else:
                blocks_train.append(a[:, None])
                blocks_other.append(b[:, None])
                categorical.append(False)
        elif c.kind == "text":
            vectorizer = TfidfVectorizer(max_features=2000)
            blocks_train.append(vectorizer.fit_transform(a).toarray())
            blocks_other.append(vectorizer.transform(b).toarray())
            categorical += [False] * blocks_train[-1].shape[1]
        else:
            if one_hot:
                encoder = OneHotEncoder(handle_unknown="ignore")
                blocks_train.append(encoder.fit_transform(a[:, None]).toarray())
                blocks_other.append(encoder.transform(b[:, None]).toarray())
            else:  # HistGradientBoosting's categories: codes below 255, missing as NaN
                few = len(np.unique(a)) <= 250
                remap = {v: i for i, v in enumerate(np.unique(a[a >= 0]))}
                blocks_train.append(np.array([remap.get(v, np.nan) if v >= 0 else np.nan for v in a])[:, None])
                blocks_other.append(np.array([remap.get(v, np.nan) if v >= 0 else np.nan for v in b])[:, None])
                categorical.append(few)
    return np.concatenate(blocks_train, 1), np.concatenate(blocks_other, 1), categorical


def score(prepared, predicted: np.ndarray, true: np.ndarray) -> float:
    if prepared.classes:
        return float(np.mean(predicted == true))
    return float(np.mean(np.abs(predicted - true)))


def boosting(prepared, train, y_train, test, y_test) -> tuple[float, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x_train, x_test, categorical = design(prepared, train, test, one_hot=False)
    model = (HistGradientBoostingClassifier if prepared.classes else HistGradientBoostingRegressor)(
        categorical_features=np.array(categorical) if any(categorical) else None, random_state=0)
    start = time.perf_counter()
    model.fit(x_train, y_train)
    return score(prepared, model.predict(x_test), y_test), time.perf_counter() - start


def linear(prepared, train, y_train, test, y_test) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression, Ridge

    x_train, x_test, _ = design(prepared, train, test, one_hot=True)
    model = LogisticRegression(max_iter=5000) if prepared.classes else Ridge(alpha=1.0)
    start = time.perf_counter()
    model.fit(x_train, y_train)
    return score(prepared, model.predict(x_test), y_test), time.perf_counter() - start


def feature_space(prepared, train, y_train, validation, y_validation, test, y_test, seed: int) -> tuple[float, float]:
    """The keras.io recipe, with its model, optimizer, epochs and batch size."""
    import keras
    import tensorflow as tf
    from keras.utils import FeatureSpace

    keras.utils.set_random_seed(seed)

    def as_inputs(split):  # keyed by the served names: FeatureSpace takes no spaces in a feature's name
        out = {}
        for c in prepared.inputs:
            values = split[c.name]
            if c.kind in ("number", "date"):
                fill = np.nanmean(train[c.name]) if np.isfinite(train[c.name]).any() else 0.0
                out[c.served] = np.where(np.isnan(values), fill, values).astype(np.float32)
            elif c.kind == "text":
                out[c.served] = values.astype(str)
            else:
                out[c.served] = np.array([str(v) for v in values])
        return out

    features = {c.served: "float_normalized" if c.kind in ("number", "date") else "string_categorical"
                for c in prepared.inputs}
    space = FeatureSpace(features=features, output_mode="concat")
    train_x = as_inputs(train)
    space.adapt(tf.data.Dataset.from_tensor_slices(train_x).batch(256))
    classes = len(prepared.classes)
    x = keras.layers.Dense(32, activation="relu")(space.get_encoded_features())
    x = keras.layers.Dropout(0.5)(x)
    output = keras.layers.Dense(classes, activation="softmax")(x) if classes else keras.layers.Dense(1)(x)
    model = keras.Model(space.get_encoded_features(), output)
    model.compile("adam", "sparse_categorical_crossentropy" if classes else "mse")

    # The recipe has no regression version: its network with a linear output and MSE, on the target
    # standardised with the training rows (on raw targets 20 epochs end far from converged: MAE 17 on cars).
    mean, scale = (0.0, 1.0) if classes else (float(np.mean(y_train)), float(np.std(y_train)) or 1.0)

    def batches(split, y, shuffle):
        y = y.astype(np.int64) if classes else ((y - mean) / scale).astype(np.float32)
        ds = tf.data.Dataset.from_tensor_slices((as_inputs(split), y))
        ds = ds.shuffle(len(y), seed=seed) if shuffle else ds
        return ds.batch(32).map(lambda f, t: (space(f), t))

    start = time.perf_counter()
    model.fit(batches(train, y_train, True), validation_data=batches(validation, y_validation, False), epochs=20,
              verbose=0)
    seconds = time.perf_counter() - start
    predicted = model.predict(batches(test, y_test, False), verbose=0)
    predicted = predicted.argmax(-1) if classes else predicted.reshape(-1) * scale + mean
    return score(prepared, predicted, y_test), seconds


# ---- Rows ------------------------------------------------------------------------------

def run_table(name: str, seeds: list, scratch: Path, data_dir: str, log: Path, hparams: str = "") -> list[dict]:
    target, task = tables.TABLES[name]
    path = tables.table(name, scratch / "tables")
    found = {system: [] for system in ("suite", *PEERS)}
    for seed in seeds:
        result = harness.run_app(tabular, ["--data", str(path), "--target", target, "--seed", str(seed),
                                           "--data-dir", data_dir, *(["--hparams", hparams] if hparams else [])],
                                  scratch, log=log)
        metric = "test_accuracy" if task == "classification" else "test_mae"
        found["suite"].append((result.results[metric], result.training_seconds))
        prepared = prepared_for(path, target, seed, data_dir)
        train, y_train = columns_of(prepared, splitting.TRAIN)
        validation, y_validation = columns_of(prepared, splitting.VALIDATION)
        test, y_test = columns_of(prepared, splitting.TEST)
        found["HistGradientBoosting"].append(boosting(prepared, train, y_train, test, y_test))
        found["linear"].append(linear(prepared, train, y_train, test, y_test))
        found["keras.io FeatureSpace"].append(feature_space(prepared, train, y_train, validation, y_validation, test,
                                                            y_test, seed))
        print(f"{name} seed {seed}: " + ", ".join(f"{k} {v[-1][0]:.4f}" for k, v in found.items()), flush=True)
    rows = []
    for system, values in found.items():
        scores = [v for v, _ in values]
        rows.append({"table": name, "task": task, "system": system, "metric": "accuracy" if task == "classification"
                     else "MAE", "mean": statistics.mean(scores), "spread": statistics.pstdev(scores),
                     "scores": scores, "fit_seconds": statistics.mean(s for _, s in values)})
    return rows


def autompg_rows(seeds: list, scratch: Path, log: Path) -> list[dict]:
    """The Auto MPG app's default on its clean cars (392, the TF tutorial's split), per seed."""
    values = [harness.run_app(regression, ["--seed", str(seed)], scratch, log=log) for seed in seeds]
    scores = [v.results["test_mae"] for v in values]
    return [{"table": "cars (clean, the Auto MPG app's split)", "task": "regression", "system": "apps.regression",
             "metric": "MAE", "mean": statistics.mean(scores), "spread": statistics.pstdev(scores), "scores": scores,
             "fit_seconds": statistics.mean(v.training_seconds for v in values)}]


# ---- Scale ---------------------------------------------------------------------------

def make_large(path: Path, gigabytes: float, seed: int = 0) -> int:
    """seattle_weather's rows repeated, numbers jittered and dates shifted, until the file holds `gigabytes`."""
    source = list(csv.DictReader(open(tables.seattle_weather())))
    rng = np.random.default_rng(seed)
    numeric = ["precipitation", "temp_max", "temp_min", "wind"]
    rows, written = 0, 0
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(source[0]))
        writer.writeheader()
        while written < gigabytes * 1e9:
            noise = rng.normal(0, 0.3, (len(source), len(numeric)))
            for row, jitter in zip(source, noise):
                out = dict(row)
                for value, column in zip(jitter, numeric):
                    out[column] = f"{float(row[column]) + value:.1f}"
                writer.writerow(out)
            rows += len(source)
            written = f.tell()
    return rows


def scale_row(path: Path, scratch: Path, data_dir: str) -> dict:
    """Read and train one epoch in a fresh process: its figures, and its peak RSS (and the export check's,
    which runs in a process of its own)."""
    import json

    argv = ["--data", str(path), "--target", "weather", "--epochs", "1", "--batch-size", "4096", "--data-dir",
            data_dir, "--litert", "none", "--pictures", "none", "--fresh", "--publish", "always",
            "--logdir", str(scratch / "runs"), "--export-dir", str(scratch / "export")]
    done = harness.run_measured("apps.tabular", argv)
    stdout, seconds = done.stdout, done.seconds
    lines = stdout.splitlines()
    run_dir = Path(next(x.split("run folder ", 1)[1] for x in lines if x.startswith("run folder ")))
    reading = next(x for x in lines if x.strip().startswith("read ") and " rows in " in x)  # "read F: N rows in S s"
    reading_seconds = max(1.0, float(reading.rsplit(" rows in ", 1)[1].split()[0]))
    finished = json.loads((run_dir / "FINISHED.json").read_text())
    counts = json.loads((run_dir / "split.json").read_text())["counts"]
    return {"bytes": path.stat().st_size, "rows": sum(counts.values()), "train_rows": counts["train"],
            "reading_seconds": reading_seconds, "reading_rows_per_second": sum(counts.values()) / reading_seconds,
            "wall_seconds": seconds, "training_seconds": finished["training_seconds"],
            "train_rows_per_second": counts["train"] / finished["training_seconds"],
            "peak_rss_mb": done.peak_rss_mb,
            "peak_memory_mb": done.peak_memory_mb, "test_accuracy": finished["test_accuracy"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default=",".join(tables.TABLES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scale-gb", type=float, default=0.0, help="only the scale rows, at a tenth of G and at G")
    parser.add_argument("--json", default="", metavar="DIR")
    parser.add_argument("--hparams", default="", metavar="FILE",
                        help="the suite's runs take these hyperparameters (apps.tabular --hparams): a variant's rows")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-tabular-"))
    data_dir = str(scratch / "data")
    log = scratch / "runs.log"
    print(f"scratch folder {scratch} (runs' output: {log})", flush=True)
    if args.scale_gb:
        rows = harness.scale_rows(args.scale_gb, scratch, "weather", make_large,
                                  lambda path: scale_row(path, scratch, data_dir), "rows")
        harness.write_json(args.json, "tabular-scale", harness.command("benchmarks.tabular", argv), rows)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in args.tables.split(","):
        rows += run_table(name, seeds, scratch, data_dir, log, args.hparams)
        if name == "cars" and not args.hparams:
            rows += autompg_rows(seeds, scratch, log)
    print(markdown({"rows": rows}))
    record = f"tabular-{Path(args.hparams).stem}" if args.hparams else "tabular"  # a variant's beside the default's
    harness.write_json(args.json, record, harness.command("benchmarks.tabular", argv), rows)


def markdown(record: dict) -> str:
    if "bytes" in record["rows"][0]:  # tabular-scale
        lines = ["| CSV | rows (train) | reading pass: s (rows/s) | training: s (rows/s) | test accuracy "
                 "| peak RSS of the run | peak memory with the export check |", "|---|---|---|---|---|---|---|"]
        for r in record["rows"]:
            lines.append(f"| {r['bytes'] / 1e9:.2f} GB | {r['rows']:,} ({r['train_rows']:,}) | "
                         f"{r['reading_seconds']:.0f} ({r['reading_rows_per_second']:,.0f}) | "
                         f"{r['training_seconds']:.0f} ({r['train_rows_per_second']:,.0f}) | "
                         f"{r['test_accuracy']:.4f} | {r['peak_rss_mb']:,.0f} MB | "
                         f"{harness.megabytes(r.get('peak_memory_mb'))} |")
        return "\n".join(lines)
    lines = ["| table | system | test metric (mean ± spread) | fit seconds |", "|---|---|---|---|"]
    for r in record["rows"]:
        lines.append(f"| {r['table']} | {r['system']} | {r['metric']} {r['mean']:.4f} ± {r['spread']:.4f} | "
                     f"{r['fit_seconds']:.1f} |")
    return "\n".join(lines) + "\n\n" + against(record["rows"])


PEERS = ("HistGradientBoosting", "linear", "keras.io FeatureSpace")


def against(rows: list) -> str:
    """The suite against each peer, per table: accuracy in points (+ ahead), MAE in % of the peer's (- ahead)."""
    lines = ["| table | " + " | ".join(f"suite vs {peer}" for peer in PEERS) + " |", "|---" * (len(PEERS) + 1) + "|"]
    for table in dict.fromkeys(r["table"] for r in rows):
        mine = {r["system"]: r for r in rows if r["table"] == table}
        if "suite" not in mine:
            continue
        suite, cells = mine["suite"], []
        for peer in PEERS:
            theirs = mine[peer]["mean"]
            # Rounded as printed before the verdict: the app's accuracy is a float32 count of test rows, the peers'
            # a float64 one, so "even" differs in the eighth digit.
            if suite["metric"] == "accuracy":
                gap = round(100 * (suite["mean"] - theirs), 2)
                cells.append(f"{gap:+.2f} points " + ("(ahead)" if gap > 0 else "(even)" if gap == 0 else "(behind)"))
            else:
                gap = round(100 * (suite["mean"] - theirs) / theirs, 1)
                cells.append(f"{gap:+.1f} % MAE " + ("(ahead)" if gap < 0 else "(even)" if gap == 0 else "(behind)"))
        lines.append(f"| {table} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

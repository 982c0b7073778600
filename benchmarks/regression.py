"""Regression benchmark: the suite's models against the usual peers, on the TF tutorial's split.

    pip install -r benchmarks/requirements.txt      # scikit-learn, for the peers
    python -m benchmarks.regression                  # ~10 min on 2 CPU cores
    python -m benchmarks.regression --seeds 0,1     # fewer seeds

Auto MPG, the tutorial's split (pandas sample(frac=0.8, random_state=0)). Every
suite model trains through `python -m apps.regression`'s own run function
(pipeline, model, fit, evaluate, verified export into a scratch folder), once
per seed; the table shows the mean and spread of test MAE over the seeds. The
peers see the same training rows: the TF tutorial's DNN exactly as the
tutorial writes it, scikit-learn's random forest, gradient boosting and least
squares on the tutorial's features. Then S3: the learned line against least squares.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import keras
import numpy as np

from apps import regression
from benchmarks import harness
from core.config import default_data_dir
from pipelines import autompg


LABELS = {  # the rows as the table names them
    "ensemble": "`ensemble` (default: 10 averaged 64-64 MLPs, maker + diesel flag from the car name)",
    "mlp": "`mlp` (S4 exactly: MSE, 10 epochs, underfits)",
    "linear": "`linear` (S3's model on Auto MPG)",
    "TF tutorial DNN": "TF tutorial DNN (peer, exactly as the tutorial writes it)",
    "random forest": "random forest (scikit-learn, peer)",
    "gradient boosting": "gradient boosting (scikit-learn, peer)",
    "least squares": "least squares (scikit-learn, peer)",
}


def suite_model(model: str, seed: int, scratch: str, extra=()) -> dict:
    """One run of the app (its own run function: pipeline, model, fit, evaluate, verified export): its figures."""
    return harness.run_app(regression, ["--model", model, "--seed", str(seed), *extra], scratch, quiet=False).results


def tutorial_features(table: dict) -> np.ndarray:
    """The tutorial's columns: the six numbers and origin one-hot (car name dropped)."""
    numbers = np.stack([table[n].astype(np.float32) for n in autompg.NUMERIC], axis=1)
    return np.concatenate([numbers, np.eye(3, dtype=np.float32)[table["origin"] - 1]], axis=1)


def tutorial_dnn(x_train, y_train, x_test, y_test, seed: int) -> float:
    """The TF basic-regression tutorial's dnn_model, as written there."""
    keras.utils.set_random_seed(seed)
    normalizer = keras.layers.Normalization(axis=-1)
    normalizer.adapt(x_train)
    model = keras.Sequential([normalizer, keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(loss="mean_absolute_error", optimizer=keras.optimizers.Adam(0.001))
    model.fit(x_train, y_train, validation_split=0.2, verbose=0, epochs=100)
    return float(np.mean(np.abs(model.predict(x_test, verbose=0)[:, 0] - y_test)))


def peers(seeds) -> dict:
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    table, _ = autompg.auto_mpg_table("auto", default_data_dir())
    train, validation, test = autompg.split_indices(len(table["mpg"]))
    fit_rows = np.concatenate([train, validation])  # the tutorial's 314 training cars, in its order
    x, y = tutorial_features(table), table["mpg"]
    results = {"TF tutorial DNN": [tutorial_dnn(x[fit_rows], y[fit_rows], x[test], y[test], s) for s in seeds]}
    for name, make in [("random forest", lambda s: RandomForestRegressor(random_state=s)),
                       ("gradient boosting", lambda s: GradientBoostingRegressor(random_state=s)),
                       ("least squares", lambda s: LinearRegression())]:
        results[name] = [float(np.mean(np.abs(make(s).fit(x[fit_rows], y[fit_rows]).predict(x[test]) - y[test])))
                         for s in seeds]
    return results


def markdown(record: dict) -> str:
    """The tables of a --json record (python -m benchmarks.results)."""
    rows = record["rows"]
    lines = [f"| model | mean test MAE (mpg), seeds {record['seeds']} | std | per seed |", "|---|---|---|---|"]
    for r in rows["models"]:
        shown = " ".join(f"{m:.3f}" for m in r["per_seed"]) if r.get("show_seeds", True) else ""
        lines.append(f"| {r['model']} | {r['mean']:.3f} | {r['std']:.3f} | {shown} |")
    line = rows["s3"]
    lines += ["", f"S3 in the same run: learned w = {line['w']:.4f}, b = {line['b']:.4f}; least squares on the same "
              f"100 samples w = {line['w_least_squares']:.4f}, b = {line['b_least_squares']:.4f}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--models", default="ensemble,mlp,linear", help="suite models to run")
    parser.add_argument("--json", metavar="DIR", help="also write the rows as DIR/regression.json "
                                                      "(python -m benchmarks.results)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models.split(","):
            start = time.perf_counter()
            maes = [suite_model(model, s, scratch)["test_mae"] for s in seeds]
            rows[LABELS.get(model, f"`{model}`")] = maes
            print(f"[{model}] {time.perf_counter() - start:.0f} s for {len(seeds)} seeds", flush=True)
        rows.update({LABELS.get(name, name): maes for name, maes in peers(seeds).items()})
        line = suite_model("linear", 42, scratch, ["--dataset", "linear"])
    models = [{"model": name, "mean": statistics.mean(maes), "std": statistics.stdev(maes) if len(maes) > 1 else 0.0,
               "per_seed": maes, "show_seeds": name in (LABELS["ensemble"], LABELS["TF tutorial DNN"])}
              for name, maes in sorted(rows.items(), key=lambda item: statistics.mean(item[1]))]
    record = {"seeds": args.seeds.replace(",", "-") if args.seeds == "0,1,2,3,4" else args.seeds, "rows": {
        "models": models, "s3": {k: line[k] for k in ("w", "b", "w_least_squares", "b_least_squares")}}}
    print(f"\nAuto MPG, TF tutorial split (78 test cars), test MAE in mpg:\n\n{markdown(record)}")
    harness.write_json(args.json, "regression", harness.command("benchmarks.regression", argv), record["rows"],
                       seeds=record["seeds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Tuning benchmark: does `python -m tuning <app>` find something better than the app's default?

    python -m benchmarks.tuning --app mnist        # 20-min Bayesian search, 3 epochs a trial (~28 min in all)
    python -m benchmarks.tuning --app regression   # 20-trial Bayesian search, 5-fold CV, then 5 seeds each (~16 min)

1. The real search, as a user runs it (python -m tuning, in a subprocess), into a scratch folder.
2. The default configuration through the very same trial procedure (same
   epochs, early stopping, pipelines): its best validation objective beside
   the search's best trial, so "beats the default" is measured at equal epochs.
3. Test metrics of the final fits: the tuned configuration and the default,
   both trained on train + validation (the same data the search's final fit
   uses), over --seeds.
4. Memory: each trial process's resident memory after its trial (trials.jsonl)
   and the search process's as each trial ended (budget.json).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import keras_tuner

from benchmarks import harness
from cli.parser import parse_config
from observation.hparams import objective_direction
from tuning.trials import AppHyperModel

SETUPS = {
    # About 25 trials fit in the 20 minutes: 8 at random, then the Gaussian process.
    "mnist": dict(search=["--tuner", "bayesian", "--max-trials", "100", "--initial-points", "8", "--epochs", "3",
                          "--time-budget", "20"],
                  default_epochs=3, seeds=[42], metric="test_accuracy"),
    # 63 validation cars rank configurations by luck (a 30-trial search on them
    # picked one whose test MAE was worse than the default's): 5-fold CV over the 314.
    "regression": dict(search=["--tuner", "bayesian", "--max-trials", "20", "--folds", "5"],
                       default_epochs=100, seeds=[0, 1, 2, 3, 4], metric="test_mae"),
}


def search(app_name: str, scratch: Path, extra) -> Path:
    """The real search, as a user runs it. Its final fit exports into the scratch folder, beside the final fits
    below: --publish always, since a version scoring under another is a figure here, not one to hold back."""
    argv = [sys.executable, "-m", "tuning", app_name, *SETUPS[app_name]["search"], "--data-source", "mirror",
            "--logdir", str(scratch / "runs"), "--export-dir", str(scratch / "export"), "--publish", "always", *extra]
    print("$", " ".join(argv[1:]), flush=True)
    subprocess.run(argv, check=True, cwd=harness.ROOT)
    return next(p for p in (scratch / "runs" / "tuning" / app_name).iterdir() if (p / "search.json").exists())


def default_trial(app, base_argv, search_dir: Path, patience: int, folds: int) -> float:
    """The untuned configuration through the search's own trial procedure; its best validation objective."""
    base = parse_config(app, base_argv)
    scratch = search_dir.parent / "default-trial"  # its trials.jsonl row stays out of the search's
    scratch.mkdir(exist_ok=True)
    objective = app.OBJECTIVE
    hypermodel = AppHyperModel(app, base, scratch, objective, patience, None, folds=folds)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)  # an empty HyperParameters: every value is the space's default
    history = hypermodel.fit(hp, model, verbose=2)
    values = history.history[objective]
    return max(values) if objective_direction(objective) == "max" else min(values)


def final_fits(app, argv, seeds, scratch: Path, metric: str) -> list[float]:
    """The configuration trained on train + validation for each seed (benchmarks/harness.py): its test metric."""
    return [harness.run_app(app, [*argv, "--seed", str(seed), "--include-validation"], scratch / "final",
                            quiet=False).results[metric] for seed in seeds]


def markdown(record: dict) -> str:
    """The tables of a --json record (python -m benchmarks.results)."""
    rows = record["rows"]
    objective, best = rows["objective"], rows["best"]
    lines = [f"{rows['trials']} trials; the best, trial {best['trial_id']}: {objective} {best[objective]:.4f} after "
             f"{best['epochs']} epoch(s), hyperparameters `{json.dumps(best['hparams'])}`; the default through the "
             f"same trial procedure: {objective} {rows['default_trial']:.4f}.", "",
             "| final fit on train + validation, seeds "
             f"{', '.join(map(str, rows['seeds']))} | mean {rows['metric']} | per seed |", "|---|---|---|"]
    lines += [f"| {name} | {statistics.mean(values):.4f} | {', '.join(f'{v:.4f}' for v in values)} |"
              for name, values in (("tuned", rows["tuned"]), ("default", rows["default"]))]
    memory, chief = rows["trial_mb"], rows["chief_mb"]
    if memory:
        lines += ["", f"Memory: each trial's process ended at {min(memory):.0f}-{max(memory):.0f} MB; the search "
                  f"process stayed at {min(chief, default=0):.0f}-{max(chief, default=0):.0f} MB."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=list(SETUPS), required=True)
    parser.add_argument("--seeds", default=None, help="seeds of the final fits (comma-separated)")
    parser.add_argument("--scratch", default=None, help="keep the search here (default: a temporary folder)")
    parser.add_argument("--json", metavar="DIR", help="also write the rows as DIR/tuning-APP.json "
                                                      "(python -m benchmarks.results)")
    parser.add_argument("extra", nargs="*", help="more flags for python -m tuning (after --)")
    args = parser.parse_args(argv)
    setup = SETUPS[args.app]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else setup["seeds"]
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix=f"tuning-bench-{args.app}-"))
    app = __import__(f"apps.{args.app}", fromlist=["NAME"])

    search_dir = search(args.app, scratch, args.extra)
    best = json.loads((search_dir / "best_hparams.json").read_text())
    trials = [json.loads(line) for line in (search_dir / "trials.jsonl").read_text().splitlines()]
    settings = json.loads((search_dir / "search.json").read_text())["settings"]
    trial_epochs = setup["default_epochs"]
    default_value = default_trial(app, ["--data-source", "mirror", "--epochs", str(trial_epochs)], search_dir,
                                  settings["patience"], settings.get("folds", 1))
    best_file = str(search_dir / "best_hparams.json")
    rows = {"objective": settings["objective"], "best": best, "trials": len(trials), "default_trial": default_value,
            "seeds": seeds, "metric": setup["metric"],
            "tuned": final_fits(app, ["--hparams", best_file, "--epochs", str(best["epochs"])], seeds, scratch,
                                setup["metric"]),
            "default": final_fits(app, ["--epochs", str(setup["default_epochs"])], seeds, scratch, setup["metric"]),
            "trial_mb": [r["resident_mb"] for r in trials],
            "chief_mb": json.loads((search_dir / "budget.json").read_text()).get("chief_resident_mb", [])}
    print(f"\n## {args.app}: {len(trials)} trials in {search_dir}\n\n{markdown({'rows': rows})}")
    harness.write_json(args.json, f"tuning-{args.app}", harness.command("benchmarks.tuning", argv), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

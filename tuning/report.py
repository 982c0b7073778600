"""What a search leaves behind: the HParams dashboard's layout, the time budget's
account, the top-trials table, best_hparams.json and the closing lines."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import keras_tuner
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp_api

from observation.hparams import objective_direction
from tuning.trials import model_values, resident_mb

DEADLINE_ENV = "TFSUITE_TUNING_DEADLINE"  # the chief's deadline, for its workers


def write_hparams_config(search_dir: Path, space, objective: str) -> None:
    """The HParams dashboard's columns: every hyperparameter with its domain, the
    best objective per trial (RunningBest) and the last epoch's metrics."""
    hp = keras_tuner.HyperParameters()
    space(hp)
    columns = []
    for h in hp.space:
        config = h.get_config()
        if "values" in config:  # Choice
            domain = hp_api.Discrete(config["values"])
        elif "value" in config:  # Fixed
            domain = hp_api.Discrete([config["value"]])
        elif type(h).__name__ == "Boolean":
            domain = hp_api.Discrete([False, True])
        elif type(h).__name__ == "Int":
            domain = hp_api.IntInterval(config["min_value"], config["max_value"])
        else:
            domain = hp_api.RealInterval(float(config["min_value"]), float(config["max_value"]))
        columns.append(hp_api.HParam(h.name, domain))
    columns.append(hp_api.HParam("tuner/epochs", hp_api.IntInterval(1, 10_000)))  # Hyperband's budget for the trial
    bare = objective[4:] if objective.startswith("val_") else objective
    metrics = [hp_api.Metric(f"best_{objective}", display_name=f"best {objective}"),
               hp_api.Metric(f"epoch_{bare}", group="validation", display_name=f"{objective} (last epoch)"),
               hp_api.Metric("epoch_loss", group="train", display_name="loss (last epoch)")]
    with tf.summary.create_file_writer(str(search_dir)).as_default():
        hp_api.hparams_config(hparams=columns, metrics=metrics)
    tf.summary.flush()


class Budget:
    """--time-budget over all runs of one search: the time spent is saved in
    budget.json as trials end, so a resumed search spends only what is left.
    Beside it, this process's resident memory as each trial ends.

    Once spent, the oracle hands out no more trials (its max_trials becomes the
    number it has made), and Deadline stops the running trials at an epoch end.
    """

    def __init__(self, search_dir: Path, minutes: float | None, owner: bool):
        self.file = search_dir / "budget.json"
        self.started = time.time()
        self.spent_before = json.loads(self.file.read_text())["spent_seconds"] if self.file.exists() else 0.0
        self.minutes, self.owner, self.oracle = minutes, owner, None
        self.memory = json.loads(self.file.read_text()).get("chief_resident_mb", []) if self.file.exists() else []
        self.deadline = None if minutes is None else self.started + minutes * 60 - self.spent_before
        if minutes is not None and not owner and DEADLINE_ENV in os.environ:  # a worker: the chief's deadline
            self.deadline = float(os.environ[DEADLINE_ENV])

    def attach(self, oracle) -> None:
        """Wraps the oracle's end_trial (in the process that owns the oracle) to account time and stop when spent."""
        self.oracle = oracle
        end_trial, lock = oracle.end_trial, threading.Lock()

        def accounted_end_trial(trial):
            end_trial(trial)
            with lock:
                self.memory.append(round(resident_mb(), 1))
                self.save()
                self.stop_if_spent()

        oracle.end_trial = accounted_end_trial
        self.stop_if_spent()

    def stop_if_spent(self) -> None:
        if self.deadline is not None and time.time() >= self.deadline and self.oracle is not None:
            if not self.oracle.max_trials or self.oracle.max_trials > len(self.oracle.trials):
                print(f"time budget of {self.minutes:g} min spent: no new trials", flush=True)
            self.oracle.max_trials = max(len(self.oracle.trials), 1)

    def save(self) -> None:
        if self.owner:
            spent = self.spent_before + time.time() - self.started
            self.file.write_text(json.dumps({"spent_seconds": round(spent, 1), "budget_minutes": self.minutes,
                                             "chief_resident_mb": self.memory}))


def summarise(tuner, search_dir: Path, top: int, objective: str, defaults: dict) -> dict | None:
    """Prints the top trials and the failed ones, and where the untuned default
    stands; writes best_hparams.json; returns the best or None."""
    trials = list(tuner.oracle.trials.values())
    done = sorted((t for t in trials if t.status == "COMPLETED" and t.score is not None),
                  key=lambda t: t.score, reverse=objective_direction(objective) == "max")
    failed = [t for t in trials if t.status in ("FAILED", "INVALID")]
    names = sorted({k for t in done[:top] for k in model_values(t.hyperparameters)})
    print(f"\n{len(trials)} trial(s): {len(done)} completed, "
          f"{len(failed)} failed. Top {min(top, len(done))} by {objective}:")
    header = ["trial", objective, "epochs"] + names
    rows = [[t.trial_id, f"{t.score:.4f}", str(t.best_step + 1),
             *(_fmt(t.hyperparameters.values.get(n)) for n in names)] for t in done[:top]]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    default = next((t for t in done if model_values(t.hyperparameters) == defaults), None)
    if default is not None and done[0] is default:
        print(f"the untuned default (trial {default.trial_id}) is the best of this search: no configuration tried "
              f"beats it at up to {default.best_step + 1} epoch(s)")
    elif default is not None:
        print(f"the best trial beats the untuned default (trial {default.trial_id}, {objective} {default.score:.4f}, "
              f"rank {done.index(default) + 1}) by {abs(done[0].score - default.score):.4f}")
    for t in failed:
        last = (t.message or "").strip().splitlines()[-1:] or ["no message"]
        print(f"failed: trial {t.trial_id}: {last[0][:200]}")
    if not done:
        return None
    best = done[0]
    record = {"hparams": model_values(best.hyperparameters), "epochs": best.best_step + 1, objective: best.score,
              "trial_id": best.trial_id, "search": str(search_dir)}
    (search_dir / "best_hparams.json").write_text(json.dumps(record, indent=2))
    return record


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def memory(search_dir: Path) -> str:
    """Resident memory of the trial processes after their trials, and of this one."""
    log = search_dir / "trials.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    mb = [r["resident_mb"] for r in rows]
    processes = len({(r["tuner"], r.get("pid")) for r in rows})
    trials = (f"{min(mb):.0f}-{max(mb):.0f} MB after each of {len(mb)} trial(s) in {processes} process(es)"
              if mb else "no trial")
    return f"{trials}; this process {resident_mb():.0f} MB"


def closing(search_dir: Path, objective: str, train: str) -> str:
    """The search's last lines: where everything went and the commands to use it
    (train: the command that trains the best configuration, search.train_command)."""
    return "\n".join([
        "",
        f"Memory:       {memory(search_dir)}",
        f"Search:       {search_dir}  (trials.jsonl: time and memory per trial)",
        f"Best:         {search_dir / 'best_hparams.json'}  (train it yourself: {train})",
        f"TensorBoard:  tensorboard --logdir {search_dir}  (HParams tab: every trial, its values and best {objective})",
    ])

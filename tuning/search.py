"""python -m tuning <app>: a Keras Tuner search over an app's search space, then the best model trained and exported.

    python -m tuning mnist --time-budget 20            # Hyperband, ends cleanly after 20 minutes
    python -m tuning regression --tuner bayesian --max-trials 20 --folds 5   # trials scored by 5-fold CV
    python -m tuning sentiment --model cnn --workers 2  # two worker processes share one search

Every flag of `python -m apps.<app>` passes through (--smoke, --data-source,
--strategy, --seed, ...); --epochs is the most a trial trains. The search is
linear: app flags -> search folder (resumed or new) -> tuner -> search ->
top trials table -> best_hparams.json -> the best configuration retrained on
train + validation for its best epoch count -> exported as the app's next version.

This process holds the search (Keras Tuner's oracle); trials train in worker
processes that exit after --trials-per-worker trials (tuning/parallel.py says why).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf

from cli.parser import parse_config
from core.config import space_defaults
from core.errors import UsageError
from training.run_folder import FINISHED, check_writable
from cli.main import HELD_EXIT, guarded
from training.precision import resolve_mixed_precision
from training.strategy import describe, resolve_strategy
from tuning import parallel, report
from observation.hparams import objective_direction
from tuning.trials import AppHyperModel

TUNERS = {"hyperband": keras_tuner.Hyperband, "bayesian": keras_tuner.BayesianOptimization,
          "random": keras_tuner.RandomSearch}


def tuning_parser() -> argparse.ArgumentParser:
    from cli.parser import HelpFormatter, Parser, examples, positive

    parser = Parser(prog="python -m tuning", add_help=False, usage="python -m tuning APP [search flags] [app flags]",
                     formatter_class=HelpFormatter, epilog=examples(sys.modules[__name__]),
                     description="A Keras Tuner search over an app's search space, then the best configuration "
                                 "retrained on train + validation and exported. Flags the search does not know go to "
                                 "the app (python -m tuning APP --help lists them).")
    add = parser.add_argument
    add("-h", "--help", action="store_true", help="show this help (with APP: the app's flags too) and exit")
    add("app", help="the app to tune: " + ", ".join(_apps()))
    add("--tuner", choices=list(TUNERS), default="hyperband", help="search algorithm (default: hyperband)")
    add("--max-trials", type=positive(int), default=None,
        help="most trials to run (default: 20; Hyperband: as many as its brackets take)")
    add("--epochs", type=positive(int), default=None,
        help="most epochs a trial trains, Hyperband's max_epochs (default: the model's own)")
    add("--time-budget", type=positive(float), default=None, metavar="MINUTES",
        help="end the search cleanly once this much time (over all resumes) is spent")
    add("--patience", type=positive(int), default=3, help="early stopping: epochs without "
                                                          "improvement before a trial stops")
    add("--factor", type=positive(int), default=3, help="Hyperband: the reduction factor between rounds")
    add("--initial-points", type=positive(int), default=None,
        help="Bayesian: random trials before the Gaussian process (default: a "
             "third of --max-trials, at least 3, at most 3 per hyperparameter)")
    add("--workers", type=int, default=1,
        help="train trials in N worker processes on this machine against one chief (Keras Tuner's oracle service); 0 "
             "trains them in this process, whose memory then grows trial by trial (default: 1)")
    add("--trials-per-worker", type=positive(int), default=1,
        help="a worker process is replaced after this many trials, which gives its memory back (default: 1)")
    add("--folds", type=positive(int), default=1,
        help="score each trial by K-fold cross-validation over train + validation instead of the validation split (K "
             "times the training; for small data sets)")
    add("--search-id", default="", help="name the search folder (default: <model>-<tuner>-<n>); "
                                        "workers on other machines pass the chief's")
    add("--fresh", action="store_true", help="start a new search even if an unfinished "
                                             "one of the same model and tuner exists")
    add("--top", type=positive(int), default=10, help="rows of the top-trials table")
    add("--no-retrain", action="store_true", help="stop after the search: no final training or export")
    return parser


def print_help(app_name: str | None) -> None:
    """python -m tuning --help: the search's flags, then (with an app) the app's own flags, which pass through."""
    tuning_parser().print_help()
    if app_name in _apps():
        from cli.parser import build_parser

        print(f"\nflags of python -m apps.{app_name}, which pass through to every trial and the final fit:\n")
        build_parser(importlib.import_module(_apps()[app_name])).print_help()


def parse(argv):
    if not argv:  # no app: what to tune is the one thing a search cannot guess
        raise UsageError("which app? python -m tuning APP [flags], APP one "
                         f"of {', '.join(_apps())} (--help lists the flags)")
    if "-h" in argv or "--help" in argv:
        print_help(next((a for a in argv if not a.startswith("-")), None))
        raise SystemExit(0)
    args, rest = tuning_parser().parse_known_args(argv)
    args.argv = list(argv)  # the command line, for worker processes
    args.app_argv = rest  # the app's own flags, for the final fit
    if args.app not in _apps():
        raise UsageError(f"unknown app {args.app!r}; choose one of {', '.join(_apps())}")
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {args.workers}")
    app = importlib.import_module(_apps()[args.app])
    base = parse_config(app, rest + (["--epochs", str(args.epochs)] if args.epochs else []))
    spec = app.MODELS[base.model]
    if spec.space is None:
        spaced = [m for m, s in app.MODELS.items() if s.space is not None]
        raise UsageError(f"model {base.model!r} of {app.NAME} has no search "
                         f"space; tune one of {', '.join(spaced)} (--model)")
    if base.explain is not None:
        raise UsageError("--explain explains one input with an exported "
                         f"model: python -m apps.{app.NAME} --explain ...")
    if base.fine_tune_epochs:
        raise UsageError("--fine-tune-epochs: a trial trains one phase; search from the loaded model (--init-from, "
                         "with or without --freeze), then fine-tune the best with python -m apps." + app.NAME)
    args.objective = app.OBJECTIVE  # one app, one task, one objective
    return app, args, base


def _apps():
    from apps import APPS

    return APPS


def space_config(space) -> list:
    hp = keras_tuner.HyperParameters()
    space(hp)
    return [{"class": type(h).__name__, **h.get_config()} for h in hp.space]


def settings(app, args, base) -> dict:
    """What a resumed search must share with the one it resumes (time budget and trial count may change)."""
    fields = dataclasses.asdict(base)
    for key in ("fresh", "run_id", "logdir", "export_dir", "data_dir", "profile", "hparams", "verbose", "explain",
                "explain_model", "explain_to", "pictures"):
        fields.pop(key)
    return {"app": app.NAME, "tuner": args.tuner, "objective": args.objective, "factor": args.factor,
            "initial_points": args.initial_points, "folds": args.folds,
            "patience": args.patience, "config": fields, "space": space_config(app.MODELS[base.model].space)}


def resolve_search_dir(app, args, base, worker: bool) -> Path:
    """An unfinished search of the same model and tuner to resume, or a new folder."""
    root = Path(base.logdir) / "tuning" / app.NAME
    check_writable(root, "--logdir")
    if args.search_id or worker:
        if not args.search_id:
            raise UsageError("a tuning worker needs the chief's --search-id")
        return root / args.search_id
    prefix = f"{base.model}-{args.tuner}-"
    numbers = sorted(int(p.name[len(prefix):]) for p in root.iterdir()
                     if p.name.startswith(prefix) and p.name[len(prefix):].isdigit())
    if numbers and not args.fresh and not (root / f"{prefix}{numbers[-1]}" / FINISHED).exists():
        return root / f"{prefix}{numbers[-1]}"
    return root / f"{prefix}{(numbers[-1] if numbers else 0) + 1}"


def check_resume(search_dir: Path, wanted: dict) -> bool:
    """True when resuming; refuses (UsageError, nothing touched) a search whose space or settings changed."""
    state = search_dir / "search.json"
    if not state.exists():
        return False
    before = json.loads(state.read_text())["settings"]
    changed = sorted(k for k in wanted if before.get(k) != wanted[k])
    changed += sorted(f"config.{k}" for k in wanted["config"] if before["config"].get(k) != wanted["config"][k]
                      ) if "config" in changed else []
    if changed:
        what = "a different search space" if "space" in changed else \
            "different settings (" + ", ".join(c for c in changed if c != "config") + ")"
        raise UsageError(f"search {search_dir} was started with {what}; rerun it unchanged to resume, or add --fresh "
                         "to start a new search beside it (nothing was changed)")
    return True


def make_tuner(app, args, base, search_dir: Path, hypermodel, strategy):
    common = dict(objective=keras_tuner.Objective(args.objective, objective_direction(args.objective)),
                  directory=str(search_dir.parent), project_name=search_dir.name, overwrite=False, seed=base.seed,
                  distribution_strategy=strategy if strategy and strategy.num_replicas_in_sync > 1 else None,
                  max_consecutive_failed_trials=5)
    hypermodel.declaring = True  # the constructor builds once to read the space: no data, no model for that
    if args.tuner == "hyperband":
        tuner = TUNERS["hyperband"](hypermodel, max_epochs=base.epochs, factor=args.factor, **common)
    elif args.tuner == "bayesian":
        # Keras Tuner's own default samples 3 x (number of hyperparameters) points
        # at random before its Gaussian process takes over: all 30 trials of a
        # 10-dimensional space. A third of the trials, at least 3, leaves room to use it.
        trials = args.max_trials or 20
        dims = len(space_defaults(app.MODELS[base.model].space))
        initial = args.initial_points or min(3 * dims, max(3, trials // 3))
        tuner = TUNERS["bayesian"](hypermodel, max_trials=trials, num_initial_points=initial, **common)
    else:
        tuner = TUNERS[args.tuner](hypermodel, max_trials=args.max_trials or 20, **common)
    hypermodel.declaring = False
    if not parallel.is_worker():  # the oracle lives in this process
        tuner.oracle.max_trials = args.max_trials or (None if args.tuner == "hyperband" else 20)
        default_first(tuner.oracle, app.MODELS[base.model].space)
        keep_recorded_trials(tuner.oracle)
    return tuner


def keep_recorded_trials(oracle) -> None:
    """Keras Tuner 1.4.8's end_trial saves oracle.json before it takes the trial
    off its running list, and its reload requeues every trial on that list. A
    kill between a trial's end and the next trial's start therefore ran the
    finished trial again (and overwrote its result). A trial whose own
    trial.json already says COMPLETED or FAILED is not requeued here."""
    done = ("COMPLETED", "FAILED")
    oracle._retry_queue = [t for t in oracle._retry_queue if oracle.trials[t].status not in done]


def default_first(oracle, space) -> None:
    """The search's first trial is the untuned default configuration, so the
    table always shows whether anything beat it at equal epochs. Only the
    model's values are replaced: Hyperband keeps its own epoch bookkeeping."""
    populate, defaults = oracle.populate_space, space_defaults(space)

    def populate_space(trial_id):
        response = populate(trial_id)
        if not oracle.trials and response.get("status") == "RUNNING":
            response["values"] = {**response["values"], **defaults}
        return response

    oracle.populate_space = populate_space


def search(app, args, base) -> dict:
    worker = parallel.is_worker()
    if worker:
        parallel.die_with_chief()
    chief = not worker and args.workers > 0
    if chief:
        address = parallel.oracle_address()  # a port it cannot listen on fails here, before anything starts
        # The chief only hands out trials; its workers train. Hidden GPUs keep
        # TensorFlow in this process from reserving the memory they need.
        hide_accelerators()
        strategy, where = None, f"trials in {args.workers} worker process(es)"
    else:
        strategy = resolve_strategy(base.strategy, base.cpu_devices)
        resolve_mixed_precision(base.mixed_precision, strategy)
        where = f"{strategy.num_replicas_in_sync} replica(s) ({describe(strategy)})"
    search_dir = resolve_search_dir(app, args, base, worker)
    wanted = settings(app, args, base)
    resuming = check_resume(search_dir, wanted) if not worker else True
    if not worker:
        search_dir.mkdir(parents=True, exist_ok=True)
        (search_dir / "search.json").write_text(json.dumps({"settings": wanted, "command": sys.argv}, indent=2))
        report.write_hparams_config(search_dir, app.MODELS[base.model].space, args.objective)
    budget = report.Budget(search_dir, args.time_budget, owner=not worker)
    scored = f"{args.folds}-fold cross-validated " if args.folds > 1 else ""
    print(f"{app.NAME}: {args.tuner} search of model {base.model} for the best {scored}{args.objective}, up to "
          f"{base.epochs} epoch(s) a trial, {where}, in {search_dir}" + (" (resuming)" if resuming and not worker
                                                                         else ""),
          flush=True)

    hypermodel = AppHyperModel(app, base, search_dir, args.objective, args.patience, budget.deadline,
                               static_shapes=isinstance(strategy, tf.distribute.TPUStrategy), folds=args.folds)
    tuner = make_tuner(app, args, base, search_dir, hypermodel, strategy)
    if not worker:
        budget.attach(tuner.oracle)
    # Keras Tuner gives each trial its own run under this folder, <trial>/execution0, with its HParams.
    board = keras.callbacks.TensorBoard(str(search_dir))
    search_kwargs = dict(callbacks=[board], verbose=1 if sys.stdout.isatty() else 2)
    if chief:
        parallel.run_chief(tuner, search_kwargs, args.workers, args.trials_per_worker, search_dir, args.argv,
                           budget.deadline, address)
    else:
        parallel.recycle_after(tuner)
        try:
            tuner.search(**search_kwargs)
        except parallel.Recycle:
            parallel.leave(parallel.RECYCLE_EXIT)  # the chief starts this worker's successor
    budget.save()
    if worker:
        parallel.leave(0)

    best = report.summarise(tuner, search_dir, args.top, args.objective, space_defaults(app.MODELS[base.model].space))
    if best is None:
        raise UsageError(f"no trial of {search_dir} completed; see the table above for why (nothing was exported)")
    results = {} if args.no_retrain else final_fit(app, args, base, search_dir, best)
    (search_dir / FINISHED).write_text(json.dumps({"best": best, "final": results}, indent=2))
    command = "python " + " ".join(train_command(app, args, base, search_dir, "N"))
    print(report.closing(search_dir, args.objective, command), flush=True)
    return results


def train_command(app, args, base, search_dir: Path, epochs: str) -> list[str]:
    """`-m apps.<app> <the app's flags as given> --hparams best_hparams.json --epochs N`:
    the same data and model the search tuned (the app's own flags kept)."""
    named = "--model" in args.app_argv or any(a.startswith("--model=") for a in args.app_argv)
    return ["-m", f"apps.{app.NAME}", *args.app_argv, *([] if named else ["--model", base.model]),
            "--hparams", str(search_dir / "best_hparams.json"), "--epochs", epochs]


def final_fit(app, args, base, search_dir: Path, best: dict) -> dict:
    """The best configuration trained on train + validation for its best epoch
    count and exported: `python -m apps.<app>` itself, in a fresh process (its
    own memory, the devices this process left alone). Killed half way, it
    resumes from its backup when the search is rerun."""
    run_id = f"tuned-{search_dir.name}"
    done = Path(base.logdir) / app.NAME / run_id / FINISHED
    if not done.exists():  # else: killed after the final fit but before the search was marked finished
        command = [sys.executable, *train_command(app, args, base, search_dir, str(best["epochs"])),
                   "--include-validation", "--run-id", run_id]
        print(f"\nretraining the best configuration (trial {best['trial_id']}) on train + validation for "
              f"{best['epochs']} epoch(s):\n$ python {' '.join(command[1:])}", flush=True)
        code = subprocess.run(command).returncode
        if code == HELD_EXIT and done.exists():  # trained and checked; the publishing gate kept it back (it said why)
            return json.loads(done.read_text())
        if code or not done.exists():
            raise UsageError(f"the final fit stopped (exit {code}); the search itself is complete: rerun the same "
                             "command to retry the final fit")
    return json.loads(done.read_text())


def hide_accelerators() -> None:
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already started its devices; nothing is lost but GPU memory
        pass


def main(argv=None) -> int:
    return guarded(lambda: search(*parse(sys.argv[1:] if argv is None else argv)),
                   "rerun the same command to resume the search")

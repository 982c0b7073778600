"""Run configuration: one typed dataclass and one command-line vocabulary for every app.

Every app's command line is built here from the app module's MODELS dict, so
`--epochs`, `--strategy`, `--smoke`, ... mean the same thing everywhere. Bad
input never gets a traceback: it raises UsageError, which the CLI prints as one
line and exits with code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from typing import Callable, NamedTuple

from errors import UsageError
from training.litert import VARIANTS as LITERT_VARIANTS


class ModelSpec(NamedTuple):
    """One entry of an app's MODELS dict: how to build it and how it trains by default.

    build(config, splits, steps_per_epoch) returns (model, compile_kwargs) and is
    called inside strategy.scope(); splits.info carries what the training split
    taught (normalisation statistics, vocabulary) for the model to bake in.
    augment: train on app.augment'ed batches.
    space(hp): registers the model's tunable hyperparameters on a Keras Tuner
    HyperParameters object, each with the value the model uses untuned as its
    default (python -m tuning searches it; --hparams FILE sets it). A name that
    is also a flag (batch_size, learning_rate, max_tokens, ...) sets that flag;
    the others reach build() as config.hparams.
    batch_size, learning_rate: the model's own, for a model whose space does
    not hold them. Every default has one home: the space when it holds the
    name, else here (model_defaults checks), and build() reads config, never
    a fallback of its own.
    """

    build: Callable
    epochs: int
    help: str
    batch_size: int | None = None
    learning_rate: float | None = None
    augment: bool = False
    space: Callable | None = None


def model_defaults(spec: ModelSpec) -> dict:
    """Every value a model takes untuned: its space's defaults, its batch size and learning rate.

    A value set both in the space and on the ModelSpec, or in neither, is a
    mistake in the app (two homes that can drift apart, or none).
    """
    values = space_defaults(spec.space) if spec.space is not None else {}
    for name in ("batch_size", "learning_rate"):
        own = getattr(spec, name)
        if (own is None) == (name not in values):
            raise ValueError(f"{spec.build.__name__}: {name} needs exactly one home, its space or its ModelSpec")
        values.setdefault(name, own)
    return values


STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multi_worker", "tpu")
MIXED_PRECISION = ("auto", "off", "float16", "bfloat16")
DATA_SOURCES = ("auto", "online", "tfds", "mirror")


def default_data_dir() -> str:
    """Where downloads and converted data sets are cached (outside the repo)."""
    return os.environ.get(
        "TFSUITE_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "tf-app-suite")
    )


@dataclasses.dataclass
class RunConfig:
    """Everything one run needs; saved as JSON beside its checkpoints and its export."""

    app: str
    model: str
    epochs: int
    batch_size: int  # global: per-replica batch x replicas
    learning_rate: float | None = None  # parse_config fills in the model's own (model_defaults)
    seed: int = 42
    strategy: str = "auto"
    cpu_devices: int = 1
    mixed_precision: str = "auto"
    xla: str = "auto"
    steps_per_execution: int = 1
    data_source: str = "auto"
    data_dir: str = dataclasses.field(default_factory=default_data_dir)
    logdir: str = "runs"
    export_dir: str = "saved_models"
    fresh: bool = False
    smoke: bool = False
    log_every: int = 100
    backup_every: int = 200
    profile: str = ""
    run_id: str = ""
    options: dict = dataclasses.field(default_factory=dict)  # app-specific flags
    hparams: dict = dataclasses.field(default_factory=dict)  # the model's space values that are not flags
    include_validation: bool = False  # train on train + validation (a tuned model's final retrain)
    deterministic: bool = False  # TensorFlow's op determinism: bit-identical reruns and resumes
    train_examples: int = 0  # 0: every training example; N: a random N of them (--seed)
    init_from: str = ""  # a trained model whose matching layers start this one (training/transfer.py)
    freeze: bool = False  # the loaded layers do not train (for --epochs; then --fine-tune-epochs)
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float | None = None  # None: a tenth of learning_rate
    publish: str = "gate"  # gate: only if not worse than the newest published version (training/deployment.py)
    litert: str = "all"  # the LiteRT files each export gets (training/litert.py): all, one variant, or none

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def record(self) -> dict:
        """What determines the trained model, as JSON values: every field but
        where outputs go, how often it logs and backs up, and --fresh/--run-id/--profile."""
        fields = dataclasses.asdict(self)
        for key in NOT_MODEL_DEFINING:
            fields.pop(key)
        return json.loads(json.dumps(fields, sort_keys=True))

    def identity(self) -> str:
        """A short hash of record(). Rerunning the same command gives the same
        identity, which is how an interrupted run is found again and resumed."""
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:8]


NOT_MODEL_DEFINING = ("fresh", "run_id", "logdir", "export_dir", "data_dir", "profile", "log_every", "backup_every",
                      "publish", "litert")


def differences(old: dict, new: dict) -> str:
    """The flags two records (RunConfig.record()) differ in, as a user typed them:
    '--epochs 4 (was 3), --learning-rate 0.01 (was the model's default)'."""
    def flag(key):
        return key.replace("hparam.", "hyperparameter ") if key.startswith("hparam.") else "--" + key.replace("_", "-")

    def value(v):
        return "the model's default" if v is None else ("on" if v is True else "off" if v is False else str(v))

    def flat(record):
        out = {k: v for k, v in record.items() if k not in ("options", "hparams")}
        out.update(record.get("options") or {})
        out.update({f"hparam.{k}": v for k, v in (record.get("hparams") or {}).items()})
        return out

    a, b = flat(old), flat(new)
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(f"{flag(k)} {value(b.get(k))} (was {value(a.get(k))})" for k in changed) or "none"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit; we want one line
        raise UsageError(f"{message} (see --help)")


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _profile_window(text):
    if not text:
        return ""
    parts = text.split(",")
    try:
        start, stop = (int(p) for p in parts) if len(parts) == 2 else (int(parts[0]),) * 2
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STEP or START,STOP, got {text!r}")
    if not 0 < start <= stop:
        raise argparse.ArgumentTypeError(f"need 0 < START <= STOP, got {text!r}")
    return f"{start},{stop}"


def build_parser(app) -> argparse.ArgumentParser:
    """The shared command line, with the app's model choices and its own extra flags."""
    models = "; ".join(f"{name}: {spec.help}" for name, spec in app.MODELS.items())
    parser = _Parser(
        prog=f"python -m apps.{app.NAME}",
        description=(app.__doc__ or "").strip().splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model", choices=list(app.MODELS), default=None, help=f"{models} (default: {app.DEFAULT_MODEL})")
    add("--epochs", type=_positive(int), help="training epochs (default: the model's own; 1 with --smoke)")
    add("--batch-size", type=_positive(int), help="GLOBAL batch size, split across replicas (default: the model's own)")
    add("--learning-rate", type=_positive(float), help="peak learning rate (default: the model's own)")
    add("--seed", type=int, default=42, help="seeds weights, shuffling and augmentation; the input pipeline is deterministic")
    add("--strategy", choices=STRATEGIES, default="auto",
        help="tf.distribute strategy; auto: TPU if found, else all GPUs (mirrored), else one GPU, else CPU")
    add("--cpu-devices", type=_positive(int), default=1,
        help="split the CPU into N logical devices (lets 'mirrored' run N replicas without GPUs)")
    add("--mixed-precision", choices=MIXED_PRECISION, default="auto",
        help="auto: bfloat16 on TPU, float16 on GPUs with compute capability >= 7.0, off on CPU")
    add("--xla", choices=("auto", "on", "off"), default="auto", help="XLA-compile the train step (auto: Keras decides; off on CPU)")
    add("--steps-per-execution", type=_positive(int), default=1, help="train steps per tf.function call")
    add("--data-source", choices=DATA_SOURCES, default="auto",
        help="online: the data set's public source (TensorFlow Datasets for mnist and text, the UCI file for regression); "
             "tfds: the same, by its TFDS name; mirror: the hash-pinned offline mirror; "
             "auto: prepared or reachable online data, else the mirror")
    add("--data-dir", default=default_data_dir(), help="cache for downloads and converted data (env TFSUITE_DATA_DIR)")
    add("--logdir", default="runs", help="TensorBoard logs and checkpoints go to LOGDIR/<app>/<run id>/")
    add("--export-dir", default="saved_models", help="SavedModels go to EXPORT_DIR/<app>/<version>/")
    add("--fresh", action="store_true", help="start a new run even if an interrupted run of the same command exists")
    add("--smoke", action="store_true", help="a small slice of the data and one short epoch: tries the whole path in seconds")
    add("--log-every", type=_positive(int), default=100, help="write step-level TensorBoard scalars every N steps")
    add("--backup-every", type=_positive(int), default=200,
        help="back up the whole training state every N steps (and at every epoch end): a rerun resumes at that step")
    add("--profile", type=_profile_window, default="", help="profile steps START,STOP into TensorBoard's Profile tab")
    add("--run-id", default="", help="name the run folder yourself (default: <model>-<config hash>-<n>)")
    add("--deterministic", action="store_true",
        help="TensorFlow's op determinism: the same command gives bit-identical weights, killed and resumed or not "
             "(no cost measured on CPU; see the README)")
    add("--hparams", metavar="FILE", default="",
        help="JSON of hyperparameter values (e.g. a search's best_hparams.json) for the model's search space; "
             "--batch-size and --learning-rate given on the command line still win")
    add("--train-examples", type=_positive(int), default=0, metavar="N",
        help="train on N training examples drawn at random by --seed (few labels); validation and test stay whole")
    transfer = parser.add_argument_group("transfer learning (training/transfer.py)")
    transfer.add_argument("--init-from", metavar="PATH", default="",
                          help="start from a trained model: a model.keras, a run folder, an exported version, or an "
                               "app's export folder (its newest version); layers matching by name and shape are loaded")
    transfer.add_argument("--freeze", action="store_true",
                          help="keep the loaded layers as loaded for --epochs epochs (batch norm in inference mode)")
    transfer.add_argument("--fine-tune-epochs", type=_positive(int), default=0, metavar="N",
                          help="with --freeze: then unfreeze and train everything N more epochs at a lower learning rate")
    transfer.add_argument("--fine-tune-learning-rate", type=_positive(float), default=None, metavar="RATE",
                          help="the fine-tuning phase's learning rate (default: a tenth of the model's)")
    export = parser.add_argument_group("export (training/export.py, training/deployment.py, training/litert.py)")
    export.add_argument("--publish", choices=("gate", "always"), default="gate",
                        help="gate: publish only if the test metric is not worse than the newest published version's "
                             "(beyond the metric's tolerance); always: publish regardless")
    export.add_argument("--litert", choices=("all", "none", *LITERT_VARIANTS), default="all",
                        help="the LiteRT (.tflite) files written into the export's litert/ folder")
    add("--include-validation", action="store_true",
        help="also train on the validation split (the final fit of tuned hyperparameters); validation metrics are then not held out")
    if hasattr(app, "add_arguments"):
        app.add_arguments(parser.add_argument_group(f"{app.NAME} options"))
    return parser


def parse_config(app, argv) -> RunConfig:
    """Turn a command line into a RunConfig, filling gaps from the chosen model's defaults."""
    args = vars(build_parser(app).parse_args(argv))
    if args["model"] is None:
        args["model"] = app.DEFAULT_MODEL
    spec = app.MODELS[args["model"]]
    hparams_file = args.pop("hparams")
    common = {f.name for f in dataclasses.fields(RunConfig)}
    options = {k: v for k, v in args.items() if k not in common}
    config = RunConfig(app=app.NAME, options=options, **{k: v for k, v in args.items() if k in common})
    if hparams_file and spec.space is None:
        raise UsageError(f"--hparams: model {args['model']!r} of {app.NAME} has no search space; it takes no hyperparameter file")
    # The model's defaults, then a --hparams file over them, then flags typed
    # on the command line over both. Flags a model's defaults can set default
    # to None on the command line, so "not typed" is told apart from "typed".
    chosen = read_hparams(hparams_file, spec.space, args["model"]) if hparams_file else {}
    values = {**model_defaults(spec), **chosen}
    typed = {k: _flag_value(config, k) for k in values if _is_flag(config, k) and _flag_value(config, k) is not None}
    config = apply_hparams(config, {**values, **typed})
    if config.epochs is None:
        config.epochs = 1 if config.smoke else spec.epochs
    if config.smoke:  # make step-level logging and backups visible within a short run
        config.log_every = min(config.log_every, 5)
        config.backup_every = min(config.backup_every, 10)
    if config.freeze and not config.init_from:
        raise UsageError("--freeze keeps the layers --init-from loads; give --init-from PATH too")
    if config.fine_tune_epochs and not config.freeze:
        raise UsageError("--fine-tune-epochs is the phase after --freeze's; without --freeze everything trains "
                         "from the start (use --epochs)")
    if config.fine_tune_learning_rate and not config.fine_tune_epochs:
        raise UsageError("--fine-tune-learning-rate needs --fine-tune-epochs")
    if config.init_from:
        from training.transfer import model_path

        model_path(config.init_from)  # a missing or wrong path fails here, before any work
    if config.run_id and (os.sep in config.run_id or config.run_id.startswith(".")):
        raise UsageError(f"--run-id must be a plain folder name, got {config.run_id!r}")
    if hasattr(app, "check_config"):  # combinations only the app can judge (a model that does not fit a task)
        app.check_config(config)
    return config


# ---- Hyperparameters: a model's search space (ModelSpec.space) as run settings.

def _is_flag(config: RunConfig, name: str) -> bool:
    return name in config.options or name in {f.name for f in dataclasses.fields(RunConfig)}


def _flag_value(config: RunConfig, name: str):
    return config.options[name] if name in config.options else getattr(config, name)


def apply_hparams(config: RunConfig, values: dict) -> RunConfig:
    """A copy of config with the hyperparameter values set: a name that is a
    RunConfig field or an app flag sets it; the rest go to config.hparams."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    changes = {k: v for k, v in values.items() if k in fields}
    options = {**config.options, **{k: v for k, v in values.items() if k in config.options}}
    hparams = {**config.hparams, **{k: v for k, v in values.items() if not _is_flag(config, k)}}
    return dataclasses.replace(config, options=options, hparams=hparams, **changes)


def space_defaults(space) -> dict:
    """The value of every hyperparameter of a search space when nothing is tuned."""
    import keras_tuner  # here, not at the top: only models with a space need it

    hp = keras_tuner.HyperParameters()
    space(hp)
    return dict(hp.values)


def read_hparams(path: str, space, model: str) -> dict:
    """Hyperparameter values from a JSON file, checked against the model's space."""
    try:
        values = json.loads(open(path).read())
    except OSError as err:
        raise UsageError(f"--hparams: cannot read {path}: {err.strerror}")
    except json.JSONDecodeError as err:
        raise UsageError(f"--hparams: {path} is not JSON ({err}); expected {{\"name\": value, ...}}")
    values = values.get("hparams", values) if isinstance(values, dict) else values  # a best_hparams.json holds more
    known = space_defaults(space)
    if not isinstance(values, dict) or set(values) - set(known):
        unknown = sorted(set(values) - set(known)) if isinstance(values, dict) else values
        raise UsageError(f"--hparams: {path} has values that model {model!r} does not take: {unknown}; "
                         f"it takes {sorted(known)}")
    return values

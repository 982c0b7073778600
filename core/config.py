"""Run configuration: the typed RunConfig every app's run is, and the ModelSpec each app's models are declared with.

Every app's command line (cli/parser.py) is built from the app module's MODELS
dict, so `--epochs`, `--strategy`, `--smoke`, ... mean the same thing
everywhere; cli/parser.py's parse_config fills a RunConfig from it with the
model's own defaults (model_defaults: each default has one home, the model's
search space or its ModelSpec). It imports nothing of the suite but
core/errors.py, so every package may use it. Bad input raises UsageError, which the
command line prints as one line with exit code 2.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Callable, NamedTuple

from core.errors import UsageError


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
    dp_l2_clip: the per-example gradient clip --dp trains the model with
    (--dp-l2-clip overrides it).
    finish(model, splits, config): what the trained weights decide, after the
    last epoch and before the end-of-training pictures, evaluation and export
    (apps/tabular_ridge.py: the ridge and the blend); returns the lines to print.
    """

    build: Callable
    epochs: int | Callable  # or config -> int, for a default that depends on the data (read after check_config)
    help: str
    batch_size: int | None = None
    learning_rate: float | None = None
    augment: bool = False
    space: Callable | None = None
    dp_l2_clip: float = 1.0  # --dp's per-example clip for this model (training/privacy.py)
    finish: Callable | None = None


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
    data_service: str = ""  # a tf.data service that prepares the training batches (pipelines/data_service.py)
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
    publish: str = "gate"  # gate: only if not worse than the newest published version (deployment/gate.py)
    litert: str = "all"  # the LiteRT files each export gets (deployment/litert.py): all, one variant, or none
    pictures: str = "every_epoch"  # when the app's TensorBoard pictures are drawn (observation/callbacks.py: Pictures)
    verbose: bool = False  # TensorFlow's own start-up and info lines too (cli/terminal.py)
    explain: str | None = None  # explain this input with an exported model instead of training (cli/explain.py)
    explain_model: str = ""
    explain_to: str = ""
    dp: bool = False  # DP-SGD (training/privacy.py)
    dp_l2_clip: float | None = None  # None: the model's own (ModelSpec.dp_l2_clip), with --dp
    dp_noise_multiplier: float | None = None  # None: calibrated to dp_epsilon
    dp_epsilon: float | None = None  # None with no noise multiplier: training/privacy.py's DEFAULT_EPSILON
    dp_delta: float | None = None  # None: the largest power of ten below 1/N
    dp_accountant: str = "pld"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def record(self) -> dict:
        """What determines the trained model, as JSON values: every field but
        where outputs go, how often it logs and backs up, and --fresh/--run-id/--profile."""
        fields = dataclasses.asdict(self)
        for key in NOT_MODEL_DEFINING:
            fields.pop(key, None)
        return json.loads(json.dumps(fields, sort_keys=True))

    def identity(self) -> str:
        """A short hash of record(). Rerunning the same command gives the same
        identity, which is how an interrupted run is found again and resumed."""
        return hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:8]


NOT_MODEL_DEFINING = ("fresh", "run_id", "logdir", "export_dir", "data_dir", "data_service", "profile", "log_every",
                      "backup_every", "publish", "litert", "pictures", "verbose", "explain", "explain_model",
                      "explain_to",
                      "privacy")  # (a field runs wrote into run_config.json before privacy.json had its own file)


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


# ---- Hyperparameters: a model's search space (ModelSpec.space) as run settings.

def is_flag(config: RunConfig, name: str) -> bool:
    """Whether `name` is a flag (a RunConfig field or an app option), as opposed to a model hyperparameter."""
    return name in config.options or name in {f.name for f in dataclasses.fields(RunConfig)}


def flag_value(config: RunConfig, name: str):
    return config.options[name] if name in config.options else getattr(config, name)


def apply_hparams(config: RunConfig, values: dict) -> RunConfig:
    """A copy of config with the hyperparameter values set: a name that is a
    RunConfig field or an app flag sets it; the rest go to config.hparams."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    changes = {k: v for k, v in values.items() if k in fields}
    options = {**config.options, **{k: v for k, v in values.items() if k in config.options}}
    hparams = {**config.hparams, **{k: v for k, v in values.items() if not is_flag(config, k)}}
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
        raise UsageError(f"--hparams: cannot read {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"--hparams: {path} is not JSON ({err}); expected {{\"name\": value, ...}}") from None
    values = values.get("hparams", values) if isinstance(values, dict) else values  # a best_hparams.json holds more
    known = space_defaults(space)
    if not isinstance(values, dict) or set(values) - set(known):
        unknown = sorted(set(values) - set(known)) if isinstance(values, dict) else values
        raise UsageError(f"--hparams: {path} has values that model {model!r} "
                         f"does not take: {unknown}; it takes {sorted(known)}")
    return values

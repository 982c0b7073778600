"""The command line every app shares: its flags in groups, --help that reads like documentation, and the
RunConfig they make.

build_parser(app) makes `python -m apps.<app>`'s parser from the app module
(its MODELS, EXPLAIN_INPUT, docstring examples and optional add_arguments);
parse_config turns what it parses into a RunConfig (core/config.py) with the
chosen model's defaults, and refuses what can be refused before any work: bad
values, flags that need others, an --init-from path that is not there, the
app's own checks (its optional check_config). Bad input raises UsageError (one
line, exit 2), never argparse's usage dump.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil

from core.config import (DATA_SOURCES, MIXED_PRECISION, STRATEGIES, RunConfig, apply_hparams, default_data_dir,
                         flag_value,
                    is_flag, model_defaults, read_hparams)
from core.errors import UsageError
from deployment.litert import VARIANTS as LITERT_VARIANTS
from training.accounting import ACCOUNTANTS as PRIVACY_ACCOUNTANTS, DEFAULT_EPSILON
from training.transfer import model_path


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit; we want one line
        raise UsageError(f"{message} (see --help)")


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
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
        raise argparse.ArgumentTypeError(f"expected STEP or START,STOP, got {text!r}") from None
    if not 0 < start <= stop:
        raise argparse.ArgumentTypeError(f"need 0 < START <= STOP, got {text!r}")
    return f"{start},{stop}"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help that reads like Keras' docs: each default said once, where it means something.

    A flag's "(default: X)" is added only when its help does not already say
    its default and X is a real value (not None, off or empty); the epilog's
    examples keep their own line breaks.
    """

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=min(100, shutil.get_terminal_size().columns))

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, "", argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {action.default})"


def examples(module) -> str:
    """The command lines of a module's docstring (its indented `python -m ...` lines), for --help's epilog."""
    lines = [line for line in (module.__doc__ or "").splitlines() if line.strip().startswith("python -m")]
    return ("examples:\n" + "\n".join(lines)) if lines else ""


def build_parser(app) -> argparse.ArgumentParser:
    """The shared command line, with the app's model choices and its own extra flags, in groups."""
    def model_help(name, spec):
        return f"{name}: {spec.help.removeprefix('default: ')}"

    parser = Parser(prog=f"python -m apps.{app.NAME}", usage=f"python -m apps.{app.NAME} [--model NAME] [flags]",
                     description=(app.__doc__ or "").strip().splitlines()[0], formatter_class=HelpFormatter,
                     epilog=examples(app))
    group = parser.add_argument_group("model and training")
    add = group.add_argument
    add("--model", choices=list(app.MODELS), default=None, metavar="NAME",
        help=f"the model to train (default: {app.DEFAULT_MODEL}); " + "; ".join(model_help(n, s) for n,
                                                                                s in app.MODELS.items()))
    add("--epochs", type=positive(int), metavar="N", help="training epochs (default: the model's own; 1 with --smoke)")
    add("--batch-size", type=positive(int), metavar="N",
        help="GLOBAL batch size, split across replicas (default: the model's own)")
    add("--learning-rate", type=positive(float), metavar="RATE", help="peak learning rate (default: the model's own)")
    add("--hparams", metavar="FILE", default="",
        help="JSON of hyperparameter values (e.g. a search's best_hparams.json) for the model's search space; "
             "--batch-size and --learning-rate given on the command line still win")
    add("--seed", type=int, default=42, metavar="N", help="seeds weights, shuffling and augmentation; "
                                                          "the input pipeline is deterministic")
    add("--deterministic", action="store_true",
        help="TensorFlow's op determinism: the same command gives bit-identical weights, killed and resumed or not (no "
             "cost measured on CPU; docs/resume.md)")
    add("--train-examples", type=positive(int), default=0, metavar="N",
        help="train on N training examples drawn at random by --seed (few labels); validation and test stay whole")
    add("--include-validation", action="store_true",
        help="also train on the validation split (the final fit of tuned "
             "hyperparameters); validation metrics are then not held out")

    group = parser.add_argument_group("devices (training/strategy.py)")
    add = group.add_argument
    add("--strategy", choices=STRATEGIES, default="auto",
        help="tf.distribute strategy; auto: TPU if found, else all GPUs (mirrored), else one GPU, else CPU")
    add("--cpu-devices", type=positive(int), default=1, metavar="N",
        help="split the CPU into N logical devices (lets 'mirrored' run N replicas without GPUs)")
    add("--mixed-precision", choices=MIXED_PRECISION, default="auto",
        help="auto: bfloat16 on TPU, float16 on GPUs with compute capability >= 7.0, off on CPU")
    add("--xla", choices=("auto", "on", "off"), default="auto", help="XLA-compile the train step "
                                                                     "(auto: Keras decides; off on CPU)")
    add("--steps-per-execution", type=positive(int), default=1, metavar="N", help="train steps per tf.function call")

    group = parser.add_argument_group("data")
    add = group.add_argument
    add("--data-source", choices=DATA_SOURCES, default="auto",
        help="online: the data set's public source (TensorFlow Datasets for mnist and text, the UCI file for "
             "regression); tfds: the same, by its TFDS name; mirror: the hash-pinned offline mirror; auto: prepared or "
             "reachable online data, else the mirror")
    add("--data-dir", default=default_data_dir(), metavar="DIR", help="cache for downloads and converted "
                                                                      "data (env TFSUITE_DATA_DIR)")
    add("--data-service", default="", metavar="grpc://HOST:PORT",
        help="a tf.data service whose workers prepare the training batches (reading, decoding, augmenting), for "
             "input-bound training; start it with python -m pipelines.data_service (docs/data.md)")
    add("--smoke", action="store_true", help="a small slice of the data and one short "
                                             "epoch: tries the whole path in seconds")

    group = parser.add_argument_group("logs, backups and terminal")
    add = group.add_argument
    add("--logdir", default="runs", metavar="DIR", help="TensorBoard logs and checkpoints go to LOGDIR/<app>/<run id>/")
    add("--run-id", default="", metavar="NAME",
        help="name the run folder yourself (default: <model>-<config hash>-<n>)")
    add("--fresh", action="store_true", help="start a new run even if an interrupted run of the same command exists")
    add("--log-every", type=positive(int), default=100, metavar="N", help="write step-level TensorBoard "
                                                                          "scalars every N steps")
    add("--backup-every", type=positive(int), default=200, metavar="N",
        help="back up the whole training state every N steps (and at every epoch end): a rerun resumes at that step")
    add("--profile", type=_profile_window, default="", metavar="START,STOP", help="profile steps START,STOP "
                                                                                  "into TensorBoard's Profile tab")
    add("--pictures", choices=("every_epoch", "end", "none"), default="every_epoch",
        help="what the app draws for TensorBoard (labelled samples, explanations, confusion matrix, ...): after every "
             "epoch and at the end, at the end only, or nothing (about 1-2 s an epoch saved)")
    add("--verbose", action="store_true", help="also show TensorFlow's own start-up and info lines (cli/terminal.py)")

    group = parser.add_argument_group("transfer learning (training/transfer.py)")
    add = group.add_argument
    add("--init-from", metavar="PATH", default="",
        help="start from a trained model: a model.keras, a run folder, an exported version, or an app's export folder "
             "(its newest version); layers matching by name and shape are loaded")
    add("--freeze", action="store_true", help="keep the loaded layers as loaded for "
                                              "--epochs epochs (batch norm in inference mode)")
    add("--fine-tune-epochs", type=positive(int), default=0, metavar="N",
        help="with --freeze: then unfreeze and train everything N more epochs at a lower learning rate")
    add("--fine-tune-learning-rate", type=positive(float), default=None, metavar="RATE",
        help="the fine-tuning phase's learning rate (default: a tenth of the model's)")

    group = parser.add_argument_group("differential privacy (training/privacy.py)")
    add = group.add_argument
    add("--dp", action="store_true",
        help="train with DP-SGD: per-example clipping, Gaussian noise, Poisson-sampled batches of --batch-size on "
             "average; the model is the app's DP model unless --model says otherwise")
    add("--dp-l2-clip", type=positive(float), default=None, metavar="C",
        help="each example's gradient is clipped to this L2 norm "
             "(default: the model's own, 1 unless it says otherwise)")
    add("--dp-noise-multiplier", type=positive(float), default=None, metavar="SIGMA",
        help="noise standard deviation / clip (default: calibrated to --dp-epsilon)")
    add("--dp-epsilon", type=positive(float), default=None, metavar="EPS",
        help=f"the epsilon the whole run may spend; the noise is calibrated to it (default: {DEFAULT_EPSILON:g})")
    add("--dp-delta", type=positive(float), default=None, metavar="DELTA",
        help="default: the largest power of ten below 1 / training examples")
    add("--dp-accountant", choices=PRIVACY_ACCOUNTANTS, default="pld",
        help="privacy loss distributions (tighter) or Renyi DP, both from dp-accounting")

    group = parser.add_argument_group("export (deployment/export.py, deployment/gate.py, deployment/litert.py)")
    add = group.add_argument
    add("--export-dir", default="saved_models", metavar="DIR", help="SavedModels go to EXPORT_DIR/<app>/<version>/")
    add("--publish", choices=("gate", "always"), default="gate",
        help="gate: publish only if the test metric is not worse than the newest published version's (beyond the "
             "metric's tolerance); always: publish regardless")
    add("--litert", choices=("all", "none", *LITERT_VARIANTS), default="all",
        help="the LiteRT (.tflite) files written into the export's litert/ folder")

    group = parser.add_argument_group("explain a prediction instead of training (observation/explain.py)")
    add = group.add_argument
    add("--explain", metavar="INPUT", default=None, help=app.EXPLAIN_INPUT)
    add("--explain-model", metavar="PATH", default="",
        help="the model to explain with: an exported version, an app's export folder (its newest version), a run "
             "folder or a model.keras (default: the newest version under EXPORT_DIR/<app>)")
    add("--explain-to", metavar="PNG", default="",
        help="where the picture goes (default: LOGDIR/<app>/explanations/<input>-<n>.png)")
    if hasattr(app, "add_arguments"):
        app.add_arguments(parser.add_argument_group(f"{app.NAME} options"))
    return parser


def check_data_service(app, config) -> None:
    """--data-service: an address, an app whose batches are made from files (its DATA_SERVICE), and not
    with what it cannot keep (its batches come as workers finish them)."""
    if not config.data_service:
        return
    if not getattr(app, "DATA_SERVICE", False):
        raise UsageError(f"--data-service is for apps whose batches are read from files (apps.image_classifier); "
                         f"apps.{app.NAME} makes its batches in this process")
    if not config.data_service.startswith("grpc://") or ":" not in config.data_service[len("grpc://"):]:
        raise UsageError(f"--data-service {config.data_service}: give the dispatcher as grpc://HOST:PORT")
    if config.deterministic:
        raise UsageError("--data-service hands out batches in the order its workers finish them, so --deterministic "
                         "cannot hold; leave one of them out")
    if config.dp:
        raise UsageError("--dp draws each step's examples in this process (Poisson sampling); leave out --data-service")


def parse_config(app, argv) -> RunConfig:
    """Turn a command line into a RunConfig, filling gaps from the chosen model's defaults."""
    args = vars(build_parser(app).parse_args(argv))
    if args["model"] is None:  # --dp: the app's model for DP-SGD, if its default cannot train that way
        args["model"] = getattr(app, "DP_MODEL", app.DEFAULT_MODEL) if args["dp"] else app.DEFAULT_MODEL
    spec = app.MODELS[args["model"]]
    hparams_file = args.pop("hparams")
    common = {f.name for f in dataclasses.fields(RunConfig)}
    options = {k: v for k, v in args.items() if k not in common}
    config = RunConfig(app=app.NAME, options=options, **{k: v for k, v in args.items() if k in common})
    if hparams_file and spec.space is None:
        raise UsageError(f"--hparams: model {args['model']!r} of {app.NAME} "
                         "has no search space; it takes no hyperparameter file")
    # The model's defaults, then a --hparams file over them, then flags typed
    # on the command line over both. Flags a model's defaults can set default
    # to None on the command line, so "not typed" is told apart from "typed".
    chosen = read_hparams(hparams_file, spec.space, args["model"]) if hparams_file else {}
    values = {**model_defaults(spec), **chosen}
    typed = {k: flag_value(config, k) for k in values if is_flag(config, k) and flag_value(config, k) is not None}
    config = apply_hparams(config, {**values, **typed})
    if config.epochs is None and (config.smoke or not callable(spec.epochs)):
        config.epochs = 1 if config.smoke else spec.epochs
    if config.smoke:  # make step-level logging and backups visible within a short run
        config.log_every = min(config.log_every, 5)
        config.backup_every = min(config.backup_every, 10)
    if config.freeze and not config.init_from:
        raise UsageError("--freeze keeps the layers --init-from loads; give --init-from PATH too")
    if config.fine_tune_epochs and not config.freeze:
        raise UsageError("--fine-tune-epochs is the phase after --freeze's; without "
                         "--freeze everything trains from the start (use --epochs)")
    if config.fine_tune_learning_rate and not config.fine_tune_epochs:
        raise UsageError("--fine-tune-learning-rate needs --fine-tune-epochs")
    check_privacy(config)
    if config.dp and config.dp_l2_clip is None:
        config.dp_l2_clip = spec.dp_l2_clip
    if config.init_from:
        model_path(config.init_from)  # a missing or wrong path fails here, before any work
    check_data_service(app, config)
    if config.run_id and (os.sep in config.run_id or config.run_id.startswith(".")):
        raise UsageError(f"--run-id must be a plain folder name, got {config.run_id!r}")
    if hasattr(app, "check_config"):  # combinations only the app can judge (a model that does not fit a task)
        app.check_config(config)
    if config.epochs is None:  # a default that depends on the data, known once check_config has read it
        config.epochs = spec.epochs(config)
    return config


def check_privacy(config: RunConfig) -> None:
    """--dp's flags: only with --dp, noise given or calibrated (not both), on strategies it is verified on."""
    given = [f"--{k.replace('_', '-')}" for k in ("dp_noise_multiplier", "dp_epsilon", "dp_delta", "dp_l2_clip")
             if getattr(config, k) is not None]
    if not config.dp:
        if given:
            raise UsageError(f"{given[0]} sets up differentially private training; add --dp")
        return
    if config.dp_noise_multiplier and config.dp_epsilon:
        raise UsageError("--dp-noise-multiplier and --dp-epsilon both set the noise; give one (--dp-epsilon calibrates "
                         "the noise multiplier for the run's epochs, batch and data size)")
    if config.dp_delta is not None and not 0 < config.dp_delta < 1:
        raise UsageError(f"--dp-delta must be between 0 and 1, got {config.dp_delta}")
    if config.strategy in ("multi_worker", "tpu"):
        raise UsageError(f"--dp is not available with --strategy {config.strategy} yet: Poisson-sampled batches are "
                         "verified on one device and under mirrored only (docs/privacy.md)")

"""TensorBoard's HParams dashboard for runs of an app: its columns, this run's values, the metrics to compare.

Columns are what defines a model and its training, and every hyperparameter of
every model of the app (the same list for every run: TensorBoard shows one
run's list for all the runs it finds). Paths and operational flags are not
hyperparameters; they stay in run_config.json. Metrics: the validation
objective and loss, last and best, and every test result.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api, plugin_data_pb2, summary_v2

from observation.callbacks import summary_writer, write_scalars


def objective_direction(name: str) -> str:
    """max for accuracies, AUC and the like; min for losses and errors (Keras Tuner's own rule)."""
    from keras_tuner.src.engine.objective import create_objective  # not exported; it holds the rule

    return create_objective(name).direction


COMMON_HPARAMS = ("model", "epochs", "batch_size", "learning_rate", "precision", "replicas", "seed", "train_examples",
                  "init_from", "freeze", "fine_tune_epochs", "dp", "dp_epsilon", "dp_noise_multiplier", "dp_l2_clip")


def hparams_columns(app) -> list[str]:
    """The HParams dashboard's columns for every run of an app: what defines a model and its training,
    and every hyperparameter of every model's search space. Paths and operational flags are not
    hyperparameters; they stay in run_config.json."""
    from core.config import space_defaults

    names = list(COMMON_HPARAMS)
    for spec in app.MODELS.values():
        names += [n for n in (space_defaults(spec.space) if spec.space else {}) if n not in names]
    return names


def flat_values(fields: dict) -> dict:
    """A run's settings (RunConfig fields, or its run_config.json) with its app options and model
    hyperparameters at the top level, where the columns name them."""
    return {**fields, **(fields.get("options") or {}), **(fields.get("hparams") or {})}


def hparams_values(config, precision: str, replicas: int, columns: list[str], resolved: dict | None = None) -> dict:
    """This run's value of each column it has (a model without a hyperparameter leaves its cell empty).
    resolved: values the run worked out beyond its flags (--dp's calibrated noise and planned epsilon)."""
    known = {**flat_values(vars(config)), "precision": precision, "replicas": replicas, **(resolved or {})}
    values = {}
    for name in columns:
        value = known.get(name)
        if name in ("init_from",) and not value or name in ("freeze", "fine_tune_epochs") and not config.init_from:
            continue  # transfer settings only for runs that transfer
        if name.startswith("dp_") and not config.dp:
            continue  # DP settings only for DP runs
        if isinstance(value, (bool, int, float, str)):
            values[name] = value
    if not config.train_examples:
        values["train_examples"] = "all"
    return values


def best_validation(run_dir, metric: str) -> float | None:
    """The best epoch value of validation/epoch_<metric> in a run's event files (every attempt of a
    resumed run included), or None if there is none."""
    from tensorboard.backend.event_processing import event_accumulator

    folder = os.path.join(str(run_dir), "validation")
    if not os.path.isdir(folder):
        return None
    events = event_accumulator.EventAccumulator(folder, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    tag = f"epoch_{metric}"
    if tag not in events.Tags().get("tensors", []):
        return None
    values = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
    return (max if objective_direction(f"val_{metric}") == "max" else min)(values)


class HParams(keras.callbacks.Callback):
    """The run's hyperparameters and the metrics to compare runs by, for TensorBoard's HParams dashboard.

    At the start: the session with this run's values. At the end (comparison_metrics): the best
    validation values, and the experiment's columns, the same for every run of the app, and its
    metrics: final and best validation, and the test results (TensorBoard shows one run's column
    list for all; open it on one app's folder).
    """

    def __init__(self, run_dir: str, values: dict, trial_id: str):
        super().__init__()
        self.run_dir, self.values, self.trial_id = run_dir, values, trial_id

    def on_train_begin(self, logs=None):
        with summary_writer(self.run_dir).as_default():
            hparams_api.hparams(self.values, trial_id=self.trial_id)


def comparison_metrics(run_dir, columns: list[str], objective: str, step: int, tested: list[str]) -> None:
    """Writes validation/best_<metric> for the objective's metric and the loss, and the experiment
    (columns and metrics) the HParams dashboard shows. tested: the scalar names under test/."""
    metric = objective.removeprefix("val_")
    metrics = []
    for name in dict.fromkeys([metric, "loss"]):
        best = best_validation(run_dir, name)
        if best is not None:
            write_scalars(os.path.join(str(run_dir), "validation"), {f"best_{name}": best}, step)
            metrics += [hparams_api.Metric(f"epoch_{name}", group="validation",
                                           display_name=f"validation {name} (last)"),
                        hparams_api.Metric(f"best_{name}", group="validation",
                                           display_name=f"validation {name} (best)")]
    metrics += [hparams_api.Metric(name, group="test", display_name=name.replace("_", " ")) for name in tested]
    summary = summary_v2.hparams_config_pb(hparams=[hparams_api.HParam(c) for c in columns], metrics=metrics)
    # TensorBoard ticks the first five columns, those that differ between runs first (else by name):
    # the ones this app's runs differ in, so comparing two learning rates shows the learning rate.
    data = plugin_data_pb2.HParamsPluginData.FromString(summary.value[0].metadata.plugin_data.content)
    varying = differing(Path(run_dir).parent, columns)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in varying
    summary.value[0].metadata.plugin_data.content = data.SerializeToString()
    with summary_writer(str(run_dir)).as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=0)


def differing(app_folder: Path, columns: list[str]) -> set[str]:
    """The columns whose values differ between the runs in an app's folder (their run_config.json)."""
    seen: dict[str, set] = {}
    for path in app_folder.glob("*/run_config.json"):
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        known = flat_values(config)
        for name in columns:
            seen.setdefault(name, set()).add(json.dumps(known.get(name), sort_keys=True))
    return {name for name, values in seen.items() if len(values) > 1}

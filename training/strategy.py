"""Pick the tf.distribute strategy for a run, and say whether XLA compiles its train step.

(The mixed-precision policy: training/precision.py.)

One function per decision, as in tensorflow/models' get_distribution_strategy:
the run function asks for a strategy by name and never branches on it again.
"""
from __future__ import annotations

import glob
import json
import os
import warnings

import tensorflow as tf

from core.errors import UsageError


def split_cpu(n: int) -> None:
    """Expose the CPU as n logical devices, so MirroredStrategy can run n replicas without GPUs.

    Must happen before TensorFlow initialises its devices (before any op runs).
    """
    if n <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as err:  # devices already initialised in this process
        current = len(tf.config.list_logical_devices("CPU"))
        if current != n:
            raise UsageError(f"--cpu-devices {n}: TensorFlow already started with {current} CPU device(s)") from err


def _tpu_hint() -> bool:
    """Cheap local signs of a TPU. TPUClusterResolver itself may query the GCE
    metadata server, which hangs on machines without one, so it is only tried
    when one of these says a TPU is plausible."""
    return bool(
        os.environ.get("TPU_NAME")
        or os.environ.get("COLAB_TPU_ADDR")
        or glob.glob("/dev/accel*")
        or glob.glob("/dev/vfio/[0-9]*")
    )


def _tpu_strategy():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", "local"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        raise UsageError(f"no TPU could be reached ({str(err).splitlines()[0]}); use --strategy auto") from err


def read_tf_config() -> dict:
    """TF_CONFIG, validated: a malformed one is a usage error, not a hang."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        raise UsageError(
            "--strategy multi_worker needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
        )
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        task = tf_config["task"]
        index = int(task["index"])
        assert isinstance(workers, list) and workers and task["type"] in ("worker", "chief")
        assert 0 <= index < len(workers) or task["type"] == "chief"
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UsageError(f"TF_CONFIG is malformed: {raw[:200]!r}") from None
    return tf_config


def task_label(strategy) -> str:
    """'local' for single-process strategies, else this process's role, e.g. 'worker1'."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "local"
    return f"{resolver.task_type}{resolver.task_id}"


def is_chief(strategy) -> bool:
    """The one process that writes logs and exports: the chief, else worker 0."""
    label = task_label(strategy)
    if label in ("local", "chief0"):
        return True
    return label == "worker0" and "chief" not in strategy.cluster_resolver.cluster_spec().as_dict()


_cluster = {"multi_worker": False}


def in_cluster() -> bool:
    """Whether this process is one worker of a MultiWorkerMirroredStrategy cluster."""
    return _cluster["multi_worker"]


LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError)


def lost_worker_message(err: Exception) -> str:
    """One line for a collective aborted because another worker died or stopped answering.

    A survivor fails instead of hanging: seen here, 1 s after a worker was
    killed (its port refuses the next collective) and 11 s after one froze
    (SIGSTOP: TensorFlow's coordination service misses its heartbeats).
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    at = next((i for i, line in enumerate(lines) if "aborted by" in line or "unhealthy" in line), 0)
    # the unhealthy task is on the next line
    cause = " ".join(lines[at:at + 2]) if lines[at].endswith(":") else lines[at]
    return (f"lost contact with another worker of this multi-worker run ({cause[:240]}); start every worker again with "
            "the same command: they resume from their common last backup")


_gathers: dict = {}


def from_every_worker(strategy, value: int) -> list[int]:
    """`value` as every worker of the run has it (one process: [value]).

    A collective under MultiWorkerMirroredStrategy: every worker must call it
    at the same point, with its own value. Used once per run, to agree on the
    newest backup all workers hold (not per step: see preemption.StopPoint).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return [value]
    if id(strategy) not in _gathers:
        @tf.function
        def gather(local):
            per_replica = strategy.run(lambda: tf.reshape(local, [1]))
            return strategy.gather(per_replica, axis=0)

        _gathers[id(strategy)] = gather
    return [int(v) for v in _gathers[id(strategy)](tf.constant(value, tf.int64)).numpy()]


def resolve_strategy(name: str, cpu_devices: int = 1) -> tf.distribute.Strategy:
    """The strategy called `name` (see config.STRATEGIES), or a UsageError saying why not.

    Nothing here may start the TensorFlow runtime before the strategy exists:
    MultiWorkerMirroredStrategy and logical CPU devices must be configured
    first, so GPUs are counted with list_physical_devices, which does not.
    """
    from training import keras_compat

    # Correction 1 is needed under every strategy when a batch holds strings
    # (Keras averages the first batch to build the model); 2 acts only multi-worker.
    keras_compat.patch_multi_worker_fit()
    if name == "multi_worker":
        read_tf_config()
        _cluster["multi_worker"] = True
        return tf.distribute.MultiWorkerMirroredStrategy()
    split_cpu(cpu_devices)
    gpus = len(tf.config.list_physical_devices("GPU"))
    # One device: TensorFlow's default strategy, which places ops on GPU:0 if
    # there is one, else the CPU. OneDeviceStrategy("/cpu:0") would do the same
    # at half the speed (4.8 vs 9.7 steps/s for apps.mnist's default model,
    # measured on this project's 2-core machines).
    if name == "auto":
        if _tpu_hint():
            return _tpu_strategy()
        return tf.distribute.MirroredStrategy() if gpus > 1 else tf.distribute.get_strategy()
    if name == "cpu":
        if gpus:
            tf.config.set_visible_devices([], "GPU")  # before the runtime starts, like split_cpu
        return tf.distribute.get_strategy()
    if name == "gpu":
        if not gpus:
            raise UsageError("--strategy gpu: TensorFlow sees no GPU here; use --strategy cpu or auto")
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # All GPUs, or all logical CPUs when there are none (see --cpu-devices).
        if gpus:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "tpu":
        if not _tpu_hint():
            raise UsageError("--strategy tpu: no TPU found (set TPU_NAME, or run on a TPU VM); use --strategy auto")
        return _tpu_strategy()
    raise UsageError(f"unknown strategy {name!r}")


def check_fits(strategy, batch_size: int, steps_per_execution: int) -> None:
    """What a run asks of its replicas, refused in one line when they cannot do it.

    The global batch is split evenly over the replicas. Several steps per call
    (--steps-per-execution) fail inside Keras 3.15's fit under a strategy with
    more than one replica ("You must feed a value for placeholder tensor",
    keras-team/keras issue 19246, open): refused rather than a traceback.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UsageError(f"--batch-size {batch_size} is not divisible by the {replicas} replicas; use a multiple "
                         f"of {replicas}")
    if steps_per_execution > 1 and replicas > 1:
        raise UsageError(f"--steps-per-execution {steps_per_execution} with {replicas} replicas: Keras 3.15 cannot run "
                         "several steps per call under a multi-replica strategy (keras issue 19246); use "
                         "--steps-per-execution 1")


def describe(strategy) -> str:
    """A strategy's name as users know it (the default one has an internal class name)."""
    if strategy is tf.distribute.get_strategy():
        gpu = bool(tf.config.list_logical_devices("GPU"))
        return "default strategy, one " + ("GPU" if gpu else "CPU")
    return type(strategy).__name__


# Keras says this in a Python warning; xla_status says it in the run's own words, with the reason.
warnings.filterwarnings("ignore", message="Model doesn't support `jit_compile=True`")


def xla_status(model, requested: str) -> str:
    """One line when XLA compiles the train step, or when --xla on was asked for and Keras could not; else ''.

    Keras compiles nothing with XLA when a layer has no XLA kernels (lookup tables, string ops:
    the regression app reads a car's name) or under op determinism (--deterministic).
    """
    if model.jit_compile:
        return "XLA: the train step is compiled with XLA (jit_compile)"
    if requested != "on":
        return ""
    from tensorflow.python.framework.config import is_op_determinism_enabled

    if is_op_determinism_enabled():
        reason = "Keras compiles nothing with XLA under --deterministic (not every XLA op is deterministic)"
    else:
        layers = [f"{layer.name} ({type(layer).__name__})" for layer in model._flatten_layers(include_self=False)
                  if not layer.supports_jit]
        reason = f"{', '.join(layers)} use lookup tables, string ops or sparse tensors, which XLA cannot compile"
    return f"--xla on: this model trains without XLA: {reason}"

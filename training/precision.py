"""Mixed precision: the policy a run trains under, what stays in float32, and how an export is judged in it.

The policy (resolve_mixed_precision). --mixed-precision auto picks bfloat16 on a
TPU, float16 on a GPU of compute capability 7.0 or more (tensor cores) and
float32 elsewhere; float16 and bfloat16 can be asked for on any device.
Keras then keeps every variable in float32 and computes each layer in the
policy's dtype, except where a layer is built with dtype="float32":

  in float32, in every app (the range or the precision matters there)
    - preprocessing inside the model: pixel rescaling, the regression
      features' one-hot lookups and their standardisation (a car's weight is
      up to 5,140 lb, its variance about 700,000: past float16's 65,504),
      the bag's per-text L2 normalisation of TF-IDF vectors;
    - the output layer, softmax included, so probabilities, the loss and the
      metrics are float32 (Keras computes losses in float32 from them);
    - batch norm's statistics (Keras upcasts its inputs itself);
  in the policy's dtype: every other layer's matmuls, convolutions, LSTMs and
  activations, which is where the time goes.

float16 keeps 11 significant bits and a range of 6e-5 (normal) to 65,504:
Keras scales the loss (LossScaleOptimizer) so small gradients do not vanish.
bfloat16 keeps float32's range with 8 significant bits: no loss scaling.

Exports. The served SavedModel computes as trained (a GPU serves float16 at
its speed), and its outputs are float32 whatever the policy
(training/export.py: serving_endpoint). Two evaluations of one float16 model
can differ in the last bits (TF Serving's session path fuses ops, which rounds
once instead of twice), so the export check compares at the precision the
model computes in, TOLERANCE, and demands the same predicted classes except
where the model's own top two scores tie at that precision. LiteRT files are
converted from float32_copy(model): the trained weights (kept in float32 by
Keras) in a float32 copy of the architecture; the converter has no float16
or bfloat16 kernels for most ops.
"""
from __future__ import annotations

import keras
import numpy as np

# (relative, absolute) tolerance between two evaluations of one model that computes in this dtype:
# TensorFlow's own tests compare results at these (tf.test.TestCase.assertAllCloseAccordingToType:
# float16 1e-3, bfloat16 1e-2), about one unit in the last place of each format at 1.0
# (float16: 2**-10 = 9.8e-4; bfloat16: 2**-7 = 7.8e-3). float32: kernels that sum in another order.
TOLERANCE = {"float32": (1e-5, 1e-5), "float16": (1e-3, 1e-3), "bfloat16": (1e-2, 1e-2)}
_PRECISION_ORDER = ("bfloat16", "float16", "float32")  # least precise first


def _gpu_supports_float16() -> bool:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False
    capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
    return tuple(capability) >= (7, 0)  # tensor cores: Volta and later


def resolve_mixed_precision(choice: str, strategy) -> str:
    """Set Keras' global dtype policy for --mixed-precision `choice` and return its name.

    Keras wraps the optimizer in a LossScaleOptimizer itself under mixed_float16.
    """
    import tensorflow as tf

    if choice == "auto":
        if isinstance(strategy, tf.distribute.TPUStrategy):
            choice = "bfloat16"
        elif _gpu_supports_float16():
            choice = "float16"
        else:
            choice = "off"
    policy = "float32" if choice == "off" else f"mixed_{choice}"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def cpu_note(policy: str) -> str:
    """A line for a run that asked for float16 or bfloat16 on a machine with no accelerator, or ''."""
    import tensorflow as tf

    if policy == "float32" or tf.config.list_physical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return ""
    if policy == "mixed_float16":
        return ("  note: float16 on a CPU runs on TensorFlow's generic kernels, several times slower than float32 "
                "(it is what GPUs get by default; docs/devices.md)")
    return "  note: bfloat16 on a CPU is fast only with AMX or AVX-512 BF16 kernels; measure it (docs/devices.md)"


def compute_dtype(model) -> str:
    """The least precise dtype any layer of `model` computes in ("float32" for a model without mixed precision)."""
    found = {getattr(layer, "compute_dtype", "float32") for layer in model._flatten_layers(include_self=False)
             if not isinstance(layer, keras.layers.InputLayer)}  # an input layer computes nothing
    return next((d for d in _PRECISION_ORDER if d in found), "float32")


def _float32_policies(node):
    """A serialized Keras object with every mixed dtype policy made float32 (others, like uint8 inputs, kept)."""
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy" and str(node.get("config", {}).get("name", "")).startswith("mixed_"):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {k: _float32_policies(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_float32_policies(v) for v in node]
    return "float32" if isinstance(node, str) and node.startswith("mixed_") else node


def float32_copy(model):
    """The model itself if it computes in float32, else the same architecture in float32 with its trained weights.

    Keras keeps variables in float32 under mixed precision, so the copy's weights are the trained
    ones exactly; only the arithmetic between them changes precision. Nested models are copied too.
    """
    if compute_dtype(model) == "float32":
        return model
    config = _float32_policies(keras.saving.serialize_keras_object(model))
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # what layers built without a dtype of their own take
    try:
        copy = keras.saving.deserialize_keras_object(config)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    copy.set_weights(model.get_weights())
    return copy


def close(got, want, dtype: str) -> np.ndarray:
    """Element-wise: got within TOLERANCE[dtype] of want."""
    rtol, atol = TOLERANCE[dtype]
    return np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)) <= atol + rtol * np.abs(np.asarray(want, np.float64))


def ties(scores, dtype: str) -> np.ndarray:
    """[batch] bool: the example's two highest scores are equal at the precision `dtype` computes in, so
    which of the two classes is predicted is not decided by the model (another rounding may pick the other)."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        return np.zeros(len(scores), bool)
    top = np.sort(scores, axis=1)[:, -2:]
    return close(top[:, 0], top[:, 1], dtype)

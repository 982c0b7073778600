"""Mixed precision in training: the policy a run trains under, and what stays in float32.

--mixed-precision auto picks bfloat16 on a TPU, float16 on a GPU of compute
capability 7.0 or more (tensor cores) and float32 elsewhere; float16 and
bfloat16 can be asked for on any device. Keras then keeps every variable in
float32 and computes each layer in the policy's dtype, except where a layer is
built with dtype="float32":

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

How such a model is exported and checked: deployment/precision.py.
"""
from __future__ import annotations

import keras


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
        return ("  note: float16 on a CPU runs on TensorFlow's generic kernels, several times slower than float32 (it "
                "is what GPUs get by default; docs/devices.md)")
    return "  note: bfloat16 on a CPU is fast only with AMX or AVX-512 BF16 kernels; measure it (docs/devices.md)"

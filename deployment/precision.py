"""A model trained in float16 or bfloat16, exported: how it is checked, and the float32 copy its LiteRT files come from.

The served SavedModel computes as trained (a GPU serves float16 at its own
speed), and its outputs are float32 whatever the policy (deployment/export.py:
serving_endpoint). Two evaluations of one float16 model can differ in the last
bits (TF Serving's session path fuses ops, which rounds once instead of
twice), so the export check compares at the precision the model computes in,
TOLERANCE, and demands the same predicted classes except where the model's own
top two scores tie at that precision (deployment/check.py: Agreement). LiteRT
files are converted from float32_copy(model): the trained weights (kept in
float32 by Keras) in a float32 copy of the architecture; the converter has no
float16 or bfloat16 kernels for most ops. (Which layers train in which dtype:
training/precision.py.)
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
    _copy_lookup_state(model, copy)
    return copy


def _copy_lookup_state(model, copy) -> None:
    """What set_weights leaves out: an adapted lookup's vocabulary and TF-IDF weights (TextVectorization,
    StringLookup), which Keras keeps in its own variables and assets, not in the weights. Without them a
    table's free-text column in the copy has no vocabulary and fails ("no attribute idf_weights_const")."""
    import tempfile

    for source, target in zip(model._flatten_layers(), copy._flatten_layers()):
        if not hasattr(source, "save_assets"):
            continue  # no state outside the weights
        store = {}
        source.save_own_variables(store)
        target.load_own_variables(store)
        with tempfile.TemporaryDirectory() as folder:
            source.save_assets(folder)
            target.load_assets(folder)


def close(got, want, dtype: str) -> np.ndarray:
    """Element-wise: got within TOLERANCE[dtype] of want."""
    rtol, atol = TOLERANCE[dtype]
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.abs(got - want) <= atol + rtol * np.abs(want)


def ties(scores, dtype: str) -> np.ndarray:
    """[batch] bool: the example's two highest scores are equal at the precision `dtype` computes in, so
    which of the two classes is predicted is not decided by the model (another rounding may pick the other)."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        return np.zeros(len(scores), bool)
    top = np.sort(scores, axis=1)[:, -2:]
    return close(top[:, 0], top[:, 1], dtype)

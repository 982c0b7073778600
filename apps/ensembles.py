"""The sub-model both ensembles (apps/regression.py, apps/tabular.py) average: a few MLPs side by side.

    members = ensembles.members(width, h, head, "encoded_row")   # keras.Model [batch, width] -> averaged head
"""
from __future__ import annotations

import keras
from keras import layers


def members(width: int, h: dict, head, input_name: str) -> keras.Model:
    """h["members"] MLPs of h["hidden_layers"] x h["units"] ReLU units (dropout h["dropout"], L2 h["l2"]) on one
    encoded row, member i ending in head(i, x), their outputs averaged in float32. Layers are named
    member<i>_dense<j>, so --init-from finds them in any model built here."""
    features = keras.Input((width,), name=input_name)
    regularizer = l2(h)
    outputs = []
    for i in range(h["members"]):
        x = features
        for j in range(h["hidden_layers"]):
            x = layers.Dense(h["units"], activation="relu", kernel_regularizer=regularizer,
                             name=f"member{i}_dense{j + 1}")(x)
            x = layers.Dropout(h["dropout"])(x) if h["dropout"] else x
        outputs.append(head(i, x))
    average = layers.Average(dtype="float32", name="average")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(features, average, name="members")


def l2(h: dict):
    """The members' weight penalty, h["l2"] (None at 0): also for the layers that feed them (apps/tabular.py)."""
    return keras.regularizers.L2(h["l2"]) if h["l2"] else None

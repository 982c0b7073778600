"""Regression: fuel economy (Auto MPG, 392 real cars) or the S3 line; exported for TF Serving.

    python -m apps.regression                     # default model on Auto MPG: test MAE about 1.6 mpg
    python -m apps.regression --model mlp         # the seed article's MLP (S4), exactly
    python -m apps.regression --dataset linear    # S3: y = 2x + 1 + noise; reports the learned w and b
    python -m apps.regression --csv cars.csv      # your own cars, in Auto MPG's columns (with a header)

Preprocessing lives inside the model (normalisation with the training split's
statistics, a one-hot origin, the maker read from the car's name), so the
exported model takes one raw value per feature, the way TF Serving clients send them.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras
from keras import layers

from pipelines import autompg
from apps import ensembles, regression_parts
from core.config import ModelSpec
from core.errors import UsageError
from deployment.export import Serving
from deployment.litert import LiteRT

NAME = "regression"
EXPLAIN_INPUT = ("a CSV file of cars (a header naming the features, one car per row) or one car's values in the data "
                 "set's column order, comma-separated: the predicted mpg and why, per feature")
OBJECTIVE = "val_mae"  # what python -m tuning regression minimises
DP_NOT_COVERED = ("the standardisation's means and variances and the list of car makers, taken from the training cars",)
DATASETS = ("autompg", "linear")


def add_arguments(group):
    group.add_argument("--dataset", choices=DATASETS, default="autompg",
                       help="autompg: 392 real cars (UCI, or the offline "
                            "mirror); linear: S3's synthetic y = 2x + 1 + N(0, 1)")
    group.add_argument("--csv", default=None, help="train on your own cars: a CSV whose header names "
                       f"{', '.join([*autompg.FEATURES, autompg.TARGET])}")


def check_config(config):
    if config.options["csv"] and config.options["dataset"] != "autompg":
        raise UsageError("--csv holds Auto MPG columns; it cannot be combined with --dataset linear")


# ---- Data -------------------------------------------------------------------

def load_data(config):
    return autompg.load(config.options["dataset"], config.data_source, config.data_dir,
                        csv_path=config.options["csv"], smoke=config.smoke)


def augment(features, targets, seed):
    return features, targets  # no augmentation for tabular data


# ---- Models -----------------------------------------------------------------

def feature_inputs(splits):
    """One named scalar input per raw feature, typed as the exported signature."""
    names = splits.train.element_spec[0]
    return {name: keras.Input((), dtype=spec.dtype.name, name=name) for name, spec in names.items()}


def preprocess(inputs, splits, makers: bool):
    """Raw features -> one standardised float vector per car.

    Origin becomes a one-hot vector (Europe and Japan are categories, not the
    numbers 2 and 3), and so does the maker read from the car's name, beside
    a diesel flag from the same name. Then,
    as in the TF tutorial, every column, one-hots included, is standardised
    with the training split's mean and variance: the statistics a
    Normalization layer's adapt() would compute, taken with NumPy here so no
    variable is assigned inside a distribution strategy's scope.
    All of it in float32 whatever the policy (the lookups' one-hots are float32
    of themselves): a car's weight (up to 5,140 lb) has a variance of about
    700,000, past float16's 65,504 (training/precision.py).
    """
    numeric = splits.info["numeric"]
    train, _ = next(iter(splits.train.batch(1 << 20)))  # the whole (small) training split, raw
    parts = [lambda f: keras.ops.stack([keras.ops.cast(f[n], "float32") for n in numeric], axis=-1)]
    if "origin" in inputs:
        origin = layers.IntegerLookup(vocabulary=list(autompg.ORIGINS), output_mode="one_hot", name="origin_one_hot")
        parts.append(lambda f: origin(f["origin"]))
    if makers and "car_name" in inputs:
        maker = regression_parts.CarMaker(name="maker")
        known = sorted({regression_parts.car_maker(n.decode()) for n in np.asarray(train["car_name"])})
        lookup = layers.StringLookup(vocabulary=known, output_mode="one_hot", name="maker_one_hot")
        parts.append(lambda f: lookup(maker(f["car_name"])))
        diesel = regression_parts.Diesel(name="diesel", dtype="float32")
        parts.append(lambda f: diesel(f["car_name"]))

    def encode(features):
        encoded = [part(features) for part in parts]
        return layers.Concatenate(name="encoded", dtype="float32")(encoded) if len(encoded) > 1 else encoded[0]

    values = np.asarray(encode(train))
    variance = values.var(0)
    variance[variance == 0] = 1.0  # a column constant on train (the unknown-origin slot) stays as it is
    return layers.Normalization(mean=values.mean(0), variance=variance, name="standardise",
                                dtype="float32")(encode(inputs))


def _output(x):
    # [batch, 1], not [batch]: Keras metrics reduce the last axis, so on a rank-1
    # output "mae" becomes one number per batch and evaluate() averages batches
    # unweighted (Keras 3.15: Auto MPG's 14-car last test batch counted like a full one).
    return layers.Dense(1, dtype="float32", name="prediction")(x)


def build_linear(config, splits, steps_per_epoch):
    """S3's model, Dense(1) with SGD on mean squared error, after standardisation.

    Standardising x and taking full batches is what lets plain SGD land on the
    least-squares line within S3's 100 epochs (the article's unscaled SGD stops
    at w=1.31, b=1.58; batches of 32 leave the line off by up to 0.01).
    """
    inputs = feature_inputs(splits)
    model = keras.Model(inputs, _output(preprocess(inputs, splits, makers=False)), name="linear")
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * (steps_per_epoch or 1))
    return model, dict(optimizer=keras.optimizers.SGD(schedule), loss="mse", metrics=["mae"])


def build_mlp(config, splits, steps_per_epoch):
    """S4: Dense 64 relu -> Dense 64 relu -> Dense 1; Adam; mean squared error."""
    inputs = feature_inputs(splits)
    x = preprocess(inputs, splits, makers=False)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dense(64, activation="relu")(x)
    model = keras.Model(inputs, _output(x), name="mlp")
    return model, dict(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse", metrics=["mae"])


def ensemble_space(hp):
    """What `python -m tuning regression` searches; every default is the untuned default model.

    A 5-fold CV search put its best trial at the edges of the first
    ranges (the narrowest layers, the strongest L2, the smallest batch, a rate
    near the top), so each range goes one step further that way; 20 members
    because averaging more networks has only lowered the error so far.
    """
    hp.Choice("members", [1, 3, 5, 10, 20], default=10)
    hp.Int("hidden_layers", 1, 3, default=2)
    hp.Choice("units", [8, 16, 32, 64, 128], default=64)
    hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0)
    hp.Choice("l2", [0.0, 1e-4, 1e-3, 1e-2, 3e-2], default=0.0)
    hp.Choice("loss", ["mae", "huber", "mse"], default="mae")
    hp.Choice("optimizer", ["adam", "rmsprop"], default="adam")
    hp.Choice("schedule", ["constant", "cosine"], default="constant")
    hp.Float("learning_rate", 1e-4, 3e-2, sampling="log", default=1e-3)
    hp.Choice("batch_size", [8, 16, 32, 64], default=32)


def build_ensemble(config, splits, steps_per_epoch):
    """The default: ten of the TF tutorial's 64-64 networks side by side, averaged,
    trained on mean absolute error, with the car's maker and a diesel flag as features.

    Mean test MAE over seeds 0-4 on the tutorial's split, measured while
    choosing it: the tutorial's DNN 1.70; one such network with maker and
    diesel flag 1.65 with a wide spread between seeds; five averaged 1.53,
    ten 1.51. Log or inverse (gallons per mile) targets were far worse (2.3, 2.6).
    Shape and training follow config.hparams (ensemble_space).
    """
    h = config.hparams
    inputs = feature_inputs(splits)
    encoded = preprocess(inputs, splits, makers=True)
    # The members form their own sub-model on the encoded features.
    members_model = ensembles.members(encoded.shape[-1], h, lambda i, x: layers.Dense(1, name=f"member{i}_mpg")(x),
                                      "encoded_features")
    model = keras.Model(inputs, members_model(encoded), name="ensemble")  # [batch, 1], see _output
    rate = config.learning_rate
    if h["schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, config.epochs * (steps_per_epoch or 1), alpha=0.01)
    optimizer = keras.optimizers.RMSprop(rate) if h["optimizer"] == "rmsprop" else keras.optimizers.Adam(rate)
    return model, dict(optimizer=optimizer, loss=h["loss"], metrics=["mae"])


DEFAULT_MODEL = "ensemble"
MODELS = {
    "ensemble": ModelSpec(build_ensemble, epochs=100, space=ensemble_space,
                          help="default: ten averaged 64-64 MLPs with the car's maker and a diesel flag, MAE loss"),
    "mlp": ModelSpec(build_mlp, epochs=10, batch_size=32, learning_rate=1e-3, help="seed S4: 64-64-1, "
                                                                                   "Adam, MSE, 10 epochs"),
    "linear": ModelSpec(build_linear, epochs=100, batch_size=100, learning_rate=0.1,
                        help="seed S3: Dense(1), SGD, MSE, 100 epochs (full "
                             "batches of 100, so it lands on least squares)"),
}


# ---- Serving ----------------------------------------------------------------

def serving(config, splits):
    """One named input per raw feature ([batch] each) -> the prediction ([batch]).

    Auto MPG and the S3 line take different inputs, so they are two TF Serving
    models: 'regression' and 'regression_linear'.
    """
    linear = config.options["dataset"] == "linear"
    signature = {name: tf.TensorSpec([None], spec.dtype) for name, spec in splits.train.element_spec[0].items()}
    output = "y" if linear else "mpg"

    def serve(model, **features):
        return {output: tf.squeeze(model(features, training=False), -1)}

    return Serving(f"{NAME}_linear" if linear else NAME, signature, (output,), serve, metric=("mae", output),
                   litert=LiteRT(litert_core(output), litert_columns(splits)))


def litert_core(output: str):
    """LiteRT: the model after its standardisation, one float vector per car (the car
    name's string ops are not LiteRT builtins); preprocessing.json's "columns" builds it.
    Cut after the standardisation, not before: a full-integer file quantises its input with
    one scale, which on raw columns (weights in thousands beside 0/1 one-hots) lost 409 %
    of MAE on Auto MPG."""
    def core(model):
        encoded = model.get_layer("standardise").output
        rest = keras.Model(encoded, model.output)
        return ((lambda features: {output: tf.squeeze(rest(features, training=False), -1)}),
                {"features": tf.TensorSpec([None, encoded.shape[-1]], tf.float32)}, rest)

    return core


def litert_columns(splits):
    """The columns preprocess() concatenates, in its order, read from the built model's lookup layers."""
    def spec(model):
        columns = [{"from": name, "op": "number"} for name in splits.info["numeric"]]
        names = {layer.name: layer for layer in model.layers}
        if "origin_one_hot" in names:
            columns.append({"from": "origin", "op": "one_hot", "vocabulary": list(autompg.ORIGINS)})
        if "maker_one_hot" in names:
            columns.append({"from": "car_name", "op": "maker_one_hot", "aliases": regression_parts.MAKER_ALIASES,
                            "vocabulary": names["maker_one_hot"].get_vocabulary()[1:]})  # after [UNK]
            columns.append({"from": "car_name", "op": "contains", "text": "diesel"})
        standardise = names["standardise"]
        return {"inputs": {"features": {"type": "columns", "columns": columns,
                                        "mean": np.asarray(standardise.mean).reshape(-1).tolist(),
                                        "variance": np.asarray(standardise.variance).reshape(-1).tolist()}}}

    return spec


def serving_inputs(features):
    return {name: np.asarray(values) for name, values in features.items()}


# ---- TensorBoard and report -------------------------------------------------

def tensorboard_callbacks(logdir, splits, test, config):
    """Sample predictions every epoch; predicted against true, permutation importance and explained
    cars at the end (apps/regression_parts.py)."""
    features, targets = next(iter(splits.test.batch(16)))
    return regression_parts.pictures(logdir, serving_inputs(features), np.asarray(targets), test)


def explain(model, given: str, version):
    """--explain CSV (apps/regression_parts.py)."""
    return regression_parts.explain_cars(model, given)


def details(model, splits, config):
    """For the S3 line: the learned w and b next to the truth and the least-squares fit of the same samples."""
    if config.options["dataset"] != "linear":
        return {}
    x, y = splits.info["train_x"].astype(np.float64), splits.info["train_y"].astype(np.float64)
    w_ls, b_ls = np.polyfit(x, y, 1)
    at = model.predict({"x": np.array([0.0, 1.0], np.float32)}, verbose=0)  # any model: b = f(0), w = f(1) - f(0)
    at = at.reshape(-1)
    b, w = float(at[0]), float(at[1] - at[0])
    return {"w": w, "b": b, "w_least_squares": float(w_ls), "b_least_squares": float(b_ls), "w_true": 2.0,
            "b_true": 1.0}


if __name__ == "__main__":
    import sys

    from cli.main import main

    raise SystemExit(main(sys.modules[__name__]))

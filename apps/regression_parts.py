"""The regression app's own model layers and TensorBoard pictures.

CarMaker and Diesel read the raw Auto MPG car name inside the model, so the
exported model takes the name as TF Serving clients send it. Saved models name
them by their registered names (tf_app_suite>CarMaker), so loading a saved
regression model needs this module imported (importing apps.regression does).
pictures(): each epoch a table of sample predictions; at the end predicted
against true with the residuals, permutation importance and explained cars.
"""
from __future__ import annotations

import re

import keras
import numpy as np
import tensorflow as tf

from core.errors import UsageError
from pipelines import autompg
from observation import explain, figures
from observation.callbacks import Pictures
from observation.figures import plt


# Misspellings and short forms in the UCI car names, mapped to one maker each.
MAKER_ALIASES = {
    "chevy": "chevrolet", "chevroelt": "chevrolet", "vw": "volkswagen", "vokswagen": "volkswagen",
    "toyouta": "toyota", "maxda": "mazda", "mercedes-benz": "mercedes", "hi": "international",
    "capri": "mercury",
}
_FIRST_WORD = r"^\s*(\S+).*$"


def car_maker(name: str) -> str:
    """The maker of a car name, exactly as CarMaker computes it in the graph."""
    first = re.sub(_FIRST_WORD, r"\1", name.lower(), flags=re.S)
    return MAKER_ALIASES.get(first, first)


@keras.saving.register_keras_serializable(package="tf_app_suite")
class CarMaker(keras.layers.Layer):
    """'chevy monte carlo' -> 'chevrolet': lower-cased first word, aliases merged.

    In the model (not in the pipeline) so the exported model takes the raw name.
    String ops have no XLA kernels (--xla on trains this model without XLA).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_jit = False

    def call(self, names):
        first = tf.strings.regex_replace(tf.strings.lower(names), _FIRST_WORD, r"\1")
        for alias, maker in MAKER_ALIASES.items():
            first = tf.where(tf.equal(first, alias), maker, first)
        return first

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tf_app_suite")
class Diesel(keras.layers.Layer):
    """1.0 where the car's name says diesel: diesels run 30-45 mpg at weights
    where petrol cars run 20-30, and the name is the only place that says so."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_jit = False  # a string op (see CarMaker)

    def call(self, names):
        return tf.cast(tf.strings.regex_full_match(tf.strings.lower(names), ".*diesel.*"), "float32")[:, None]

    def compute_output_shape(self, input_shape):
        return (*input_shape, 1)


# ---- Pictures and explanations -------------------------------------------------

def column_groups(model) -> list[tuple[str, int]]:
    """(raw feature, columns) in the order the model's standardisation sees its columns (apps/regression.py:
    preprocess): the numbers, the origin one-hot, the maker one-hot and the diesel flag."""
    inputs = model.input if isinstance(model.input, dict) else {}
    groups = [(name, 1) for name in (*autompg.NUMERIC, "x") if name in inputs]
    names = {layer.name: layer for layer in model.layers}
    if "origin_one_hot" in names:
        groups.append(("origin", names["origin_one_hot"].vocabulary_size()))
    if "maker_one_hot" in names:
        groups += [("maker (car_name)", names["maker_one_hot"].vocabulary_size()), ("diesel (car_name)", 1)]
    return groups


def reference_car(model) -> tuple[np.ndarray, str]:
    """The car every explanation starts from, as standardised columns, and in words: the training split's
    mean for each number and its most common category for the rest (origin, maker, diesel or not).

    Not the all-zero vector (the mean of every column): its one-hot parts would be a thirtieth of every
    maker at once, a car that does not exist, for which the ensemble predicted 3.8 mpg."""
    standardise = model.get_layer("standardise")
    mean = np.asarray(standardise.mean, np.float32).reshape(-1)
    scale = np.maximum(np.sqrt(np.asarray(standardise.variance, np.float32).reshape(-1)), 1e-7)
    raw, words, at = mean.copy(), [], 0
    names = {layer.name: layer for layer in model.layers}
    for name, width in column_groups(model):
        if name in ("origin", "maker (car_name)", "diesel (car_name)"):
            shares = mean[at:at + width]
            chosen = int(shares.argmax()) if width > 1 else int(shares[0] > 0.5)
            raw[at:at + width] = np.eye(width)[chosen] if width > 1 else chosen
            layer = names.get({"origin": "origin_one_hot", "maker (car_name)": "maker_one_hot"}.get(name, ""))
            value = layer.get_vocabulary()[chosen] if layer is not None else ("diesel" if chosen else "not diesel")
            words.append(value if layer is None else f"{name.split(' ')[0]} {autompg.ORIGIN_NAMES.get(value, value)}")
        at += width
    return (raw - mean) / scale, "average numbers, " + ", ".join(words)


def car_attributions(model, features: dict) -> tuple[list[str], np.ndarray, float, str]:
    """Integrated gradients on the standardised columns from the reference car, summed per raw
    feature: [cars, features] in mpg, adding up to each car's prediction minus the reference car's;
    that prediction, and the reference car in words."""
    standardise = model.get_layer("standardise")
    encoded = np.asarray(keras.Model(model.input, standardise.output)(features), np.float32)
    rest = keras.Model(standardise.output, model.output)
    baseline, described = reference_car(model)
    groups = column_groups(model)
    edges = np.cumsum([0] + [width for _, width in groups])
    rows = []
    for car in encoded:
        columns = explain.integrated_gradients(lambda x: rest(x, training=False)[:, 0], car, baseline)
        rows.append([columns[edges[i]:edges[i + 1]].sum() for i in range(len(groups))])
    reference = float(np.asarray(rest(baseline[None]))[0, 0])
    return [name for name, _ in groups], np.array(rows), reference, described


def cars_figure(model, features: dict, predicted: np.ndarray, title: str, names: list[str] | None = None):
    labels, attributions, average, described = car_attributions(model, features)
    count = len(attributions)
    columns = min(count, 2)  # at most two across: TensorBoard shows images at most about 1,000 pixels wide
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.7 * columns + 0.6, rows * (0.3 * len(labels) + 1.4) + 0.8),
                                dpi=100, layout="constrained", squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:count]):
        values = attributions[i]
        ax.barh(range(len(labels)), values, color=[figures.RIGHT if v >= 0 else figures.WRONG for v in values])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("mpg above (+) / below (-) the reference car")
        name = names[i] if names else f"car {i + 1}"
        ax.set_title(f"{name[:32]}: predicted {predicted[i]:.1f} mpg", fontsize=9)
    figure.suptitle(f"{title}: why each prediction differs from the reference car's {average:.1f} mpg\n(integrated "
                    f"gradients; reference: {described})", fontsize=10)
    return figure


def _predict(model, features: dict) -> np.ndarray:
    batch = tf.data.Dataset.from_tensor_slices(features).batch(1 << 16)  # strings need a Dataset
    return np.asarray(model.predict(batch, verbose=0)).reshape(-1)


def pictures(logdir, features: dict, targets: np.ndarray, test: tf.data.Dataset) -> list:
    """Every epoch: a table of fixed test cars, predicted vs true. At the end: predicted against true
    with the residuals, permutation importance on the test set, and four cars explained."""
    def epoch_end(model, when):
        predicted = _predict(model, features)
        names = list(features)
        rows = ["| " + " | ".join(names) + " | predicted | true | error |", "|---" * (len(names) + 3) + "|"]
        for i, (p, t) in enumerate(zip(predicted, targets)):
            values = " | ".join(_cell(features[n][i]) for n in names)
            rows.append(f"| {values} | {p:.2f} | {t:.2f} | {p - t:+.2f} |")
        return {"sample_predictions/table": "\n".join(rows)}

    def train_end(model, when):
        x, y = next(iter(test.unbatch().batch(1 << 16)))
        x, y = {k: np.asarray(v) for k, v in x.items()}, np.asarray(y).reshape(-1)
        predicted = _predict(model, x)
        importance = explain.permutation_importance(lambda f: _predict(model, f), x, y)
        shown = {k: v[:4] for k, v in x.items()}
        car_names = [n.decode() for n in shown["car_name"]] if "car_name" in shown else None
        quantity = "mpg" if car_names else "y"
        return {"predicted_vs_true": figures.predicted_vs_true(y, predicted, quantity, f"Test set, {when}"),
                "explanations/permutation_importance": figures.bars(
                    list(importance), [m for m, _ in importance.values()], f"Test set, {when}:\nhow much the mean "
                                                                           "absolute error grows when one\n"
                    "feature is shuffled across the cars (5 shuffles; bars: their spread)",
                    "increase of the test MAE", errors=[sd for _, sd in importance.values()]),
                "explanations/cars": cars_figure(model, shown, predicted[:4], f"Test cars, {when}", car_names)}

    return [Pictures(logdir, epoch_end, train_end)]


def read_cars(given: str, inputs: dict) -> dict:
    """--explain's cars as the model's raw inputs: a CSV file with a header row, or one row of values
    in the data set's column order. Each missing column, or a value of the wrong kind, is one clear line."""
    import csv
    import io
    from pathlib import Path

    order = [name for name in autompg.FEATURES if name in inputs] or list(inputs)
    path = Path(given)
    if path.suffix.lower() == ".csv" or path.is_file():
        if not path.is_file():
            raise UsageError(f"--explain {given}: no such file; give a CSV file with a header row, or one car's values")
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        if not rows:
            raise UsageError(f"--explain {given}: no cars in the file (a header row, then one car per row)")
    else:
        values = next(csv.reader([given]))
        if len(values) != len(order):
            raise UsageError(f"--explain: {len(values)} values for the {len(order)} "
                             f"features; give them in this order: {', '.join(order)}")
        rows = [dict(zip(order, values))]
    missing = [name for name in order if name not in rows[0]]
    if missing:
        raise UsageError(f"--explain {given}: missing column(s) "
                         f"{', '.join(missing)}; the model takes {', '.join(order)}")
    features = {}
    for name in order:
        kind = inputs[name].dtype
        cells = [(row[name] or "").strip() for row in rows]
        try:
            if kind == "string":
                features[name] = np.array([c.encode() for c in cells], dtype=object)
            else:
                numbers = np.array([float(c) for c in cells])
                if "int" in kind and not np.all(numbers == np.round(numbers)):
                    raise ValueError("a whole number is needed")
                features[name] = numbers.astype(kind)
        except ValueError as err:
            raise UsageError(f"--explain: column {name} needs "
                             f"{'whole numbers' if 'int' in kind else 'numbers'}, got {cells} ({err})") from None
    return features


def explain_cars(model, given: str) -> explain.Explanation:
    """--explain CARS: each car's predicted mpg, and what each feature added or took away."""
    features = read_cars(given, model.input)
    predicted = _predict(model, features)
    names = [n.decode() for n in features["car_name"]] if "car_name" in features else None
    labels, attributions, average, described = car_attributions(model, features)
    lines = [f"reference car: {described}, predicted {average:.1f} mpg"]
    for i in range(len(predicted)):
        parts = sorted(zip(labels, attributions[i]), key=lambda p: -abs(p[1]))
        lines.append(f"{(names[i] if names else f'car {i + 1}')}: {predicted[i]:.1f} mpg = reference {average:.1f} "
                     + " ".join(f"{v:+.1f} ({k})" for k, v in parts))
    shown = {k: v[:6] for k, v in features.items()}
    figure = cars_figure(model, shown, predicted[:6], "Your cars" + (" (the first 6)" if len(predicted) > 6 else ""),
                         names[:6] if names else None)
    return explain.Explanation(", ".join(f"{p:.1f}" for p in predicted) + " mpg", figure, lines)


def _cell(value) -> str:
    value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)



"""apps.tabular's predictions, explanations, LiteRT recipe and closing lines.

Explanations are baseline Shapley values of the raw columns (observation/explain.py):
how much each column's value moved the prediction away from the reference row's,
the row whose every number is its training median, every category its most
common value and every date its median date (all read from the model itself, so
--explain needs nothing but the export). The values add up to the prediction
minus the reference row's.
"""
from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from core.errors import UsageError
from deployment import phone_inputs
from deployment.litert import LiteRT
from observation import explain, figures
from pipelines import columns
from pipelines.tables import MISSING, is_number



# ---- Predictions ------------------------------------------------------------

def predict(model, features: dict) -> np.ndarray:
    """The model's output for a dict of raw columns (strings need a Dataset, not NumPy object arrays)."""
    batch = tf.data.Dataset.from_tensor_slices(features).batch(4096)
    return np.asarray(model.predict(batch, verbose=0))


def scored(model, features: dict, classes: list) -> tuple[np.ndarray, np.ndarray]:
    """(what a row is judged by: the predicted class's probability or the predicted number; the prediction:
    class index or number)."""
    out = predict(model, features)
    if classes:
        chosen = out.argmax(-1)
        return out[np.arange(len(out)), chosen], chosen
    return out.reshape(-1), out.reshape(-1)


def served_columns(model) -> list:
    """The model's inputs, in its order: (name, dtype)."""
    return [(name, tensor.dtype) for name, tensor in model.input.items()]


def reference_row(model) -> tuple[dict, str]:
    """The row explanations start from, read from the model's own layers, and in words."""
    layer_names = {layer.name for layer in model.layers}
    medians = {}
    if "impute" in layer_names:
        names = []
        if "numbers_raw" in layer_names:
            names += model.get_layer("numbers_raw").names
        if "dates" in layer_names:
            names += model.get_layer("dates").names
        medians = dict(zip(names, model.get_layer("impute").medians))
    dates = set(model.get_layer("dates").names) if "dates" in layer_names else set()
    vocabularies = ({c["name"]: c for c in model.get_layer("category_ids").columns}
                    if "category_ids" in layer_names else {})
    row, words = {}, []
    for name, dtype in served_columns(model):
        if name in vocabularies:
            vocabulary = vocabularies[name]["vocabulary"]
            value = vocabulary[0] if vocabulary else ""
            row[name] = np.array([value], np.float32) if dtype == "float32" else np.array([str(value).encode()], object)
            words.append(f"{name} {value}")
        elif name in dates:
            value = civil_from_days(int(round(medians[name])))
            row[name] = np.array([value.encode()], object)
            words.append(f"{name} {value}")
        elif dtype == "float32":
            row[name] = np.array([medians.get(name, 0.0)], np.float32)
            words.append(f"{name} {medians.get(name, 0.0):.4g}")
        else:  # text: none
            row[name] = np.array([b""], object)
            words.append(f"{name} empty")
    return row, ", ".join(words)


def civil_from_days(days: int) -> str:
    """The ISO date `days` after 1970-01-01 (the inverse of phone_inputs.days_from_civil)."""
    import datetime

    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=days)).isoformat()


def attributions(model, features: dict, classes: list) -> tuple[np.ndarray, float, str]:
    """[rows, columns] Shapley values of each row's score (the predicted class's probability or the
    prediction), the reference row's score, and the reference row in words."""
    reference, described = reference_row(model)
    _, chosen = scored(model, features, classes)
    rows = []
    base = 0.0
    for i in range(len(next(iter(features.values())))):
        example = {k: v[i:i + 1] for k, v in features.items()}
        if classes:
            def f(batch, c=int(chosen[i])):
                return predict(model, batch)[:, c]
        else:
            def f(batch):
                return predict(model, batch).reshape(-1)
        values, base, _ = explain.baseline_shapley(f, example, reference)
        rows.append(values)
    return np.array(rows), base, described


def rows_figure(model, features: dict, classes: list, title: str, true=None):
    """One panel per row: each column's Shapley value, largest on top; the prediction in the title."""
    import matplotlib.pyplot as plt

    values, base, described = attributions(model, features, classes)
    probability, chosen = scored(model, features, classes)
    names = list(features)
    count = len(values)
    across = min(count, 2)
    down = -(-count // across)
    # 2 panels across fit a TensorBoard card at actual size (about 950 pixels)
    figure, axes = plt.subplots(down, across, figsize=(4.6 * across + 0.3, down * (0.3 * len(names) + 1.5) + 1.2),
                                dpi=100, layout="constrained", squeeze=False)
    for ax in axes.flat[count:]:
        ax.axis("off")
    unit = "probability of the predicted class" if classes else "prediction"
    for i, ax in enumerate(axes.flat[:count]):
        order = np.argsort(-np.abs(values[i]))
        shown = [f"{names[j]} = {cell(features[names[j]][i])}"[:40] for j in order]
        ax.barh(range(len(order)), values[i][order],
                color=[figures.RIGHT if v >= 0 else figures.WRONG for v in values[i][order]])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(order)), shown, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"change of the {unit}")
        said = (f"{classes[int(chosen[i])]} ({probability[i]:.0%})" if classes else f"{chosen[i]:.4g}")
        truth = "" if true is None else f", true {classes[int(true[i])] if classes else f'{float(true[i]):.4g}'}"
        ax.set_title(f"row {i + 1}: predicted {said}{truth}", fontsize=9)
    reference = textwrap.shorten(f"reference: {described}", 240, placeholder=" ...")
    figure.suptitle(f"{title}: how much each column moved the\n{unit} from the reference row's {base:.4g} "
                    f"(baseline Shapley values)\n" + "\n".join(textwrap.wrap(reference, 110)), fontsize=9)
    return figure


def cell(value) -> str:
    value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if isinstance(value, (float, np.floating)):
        return "missing" if np.isnan(value) else f"{value:.4g}"
    return "missing" if value.strip().lower() in MISSING else value


# ---- --explain ROWS.csv -------------------------------------------------------

def read_rows(given: str, model) -> tuple[dict, list]:
    """--explain's rows as the model's raw inputs (a header naming the columns as in the training file or
    as served), and the header's column each input was found under. A missing column or a number that is
    not one is one clear line."""
    path = Path(given)
    if not path.is_file():
        raise UsageError(f"--explain {given}: no such file; give a CSV file with the training file's header row and "
                         "one row per prediction")
    text = path.read_text(encoding="utf-8-sig")
    try:
        dialect = csv.Sniffer().sniff(text[:65536], delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.DictReader(io.StringIO(text), dialect=dialect))
    if not rows:
        raise UsageError(f"--explain {given}: no rows under the header")
    served = served_columns(model)
    by_served = {columns.serving_names(list(rows[0]))[c]: c for c in rows[0]}
    features = {}
    for name, dtype in served:
        column = name if name in rows[0] else by_served.get(name)
        if column is None:
            raise UsageError(f"--explain {given}: no column {name!r}; the model takes "
                             f"{', '.join(n for n, _ in served)}")
        cells = [(row[column] or "").strip() for row in rows]
        if dtype == "float32":
            try:
                features[name] = np.array([np.nan if c.lower() in MISSING else float(c) for c in cells], np.float32)
            except ValueError:
                bad = next(c for c in cells if c.lower() not in MISSING and not is_number(c))
                raise UsageError(f"--explain {given}: column {column!r} takes numbers (or an empty cell for missing), "
                                 f"got {bad!r}") from None
        else:
            features[name] = np.array([c.encode() for c in cells], object)
    return features, rows


def explain_rows(model, given: str, version) -> explain.Explanation:
    """--explain ROWS.csv: each row's prediction, and what each column added or took away."""
    features, _ = read_rows(given, model)
    classes = read_classes(version)
    values, base, described = attributions(model, features, classes)
    probability, chosen = scored(model, features, classes)
    names = list(features)
    unit = "probability" if classes else ""
    lines = [f"reference row: {described}: {unit + ' ' if unit else ''}{base:.4g}"]
    said = [f"{classes[int(c)]} ({p:.0%})" if classes else f"{c:.4g}" for p, c in zip(probability, chosen)]
    for i in range(len(values)):
        parts = sorted(zip(names, values[i]), key=lambda p: -abs(p[1]))
        lines.append(f"row {i + 1}: {said[i]} = reference {base:.4g} " + " ".join(f"{v:+.3g} ({k})" for k, v in parts))
    shown = {k: v[:6] for k, v in features.items()}
    figure = rows_figure(model, shown, classes, "Your rows" + (" (the first 6)" if len(values) > 6 else ""))
    return explain.Explanation(", ".join(said), figure, lines)


def read_classes(version) -> list:
    """The class names the export serves (its class output reads them; columns.json keeps them)."""
    path = Path(version) / "columns.json"
    return json.loads(path.read_text())["target"]["classes"] if path.exists() else []


# ---- LiteRT -------------------------------------------------------------------

def litert(info) -> LiteRT:
    """LiteRT: the model from its numeric stage on (apps/tabular_layers.py); preprocessing.json holds the
    string stage's recipe (deployment/phone_inputs.py), read from the built model's layers."""
    prepared = info["prepared"]
    classes = prepared.classes

    def boundary(model) -> dict:
        names = {layer.name for layer in model.layers}
        out = {}
        if "impute" in names:
            out["numbers"], out["missing"] = model.get_layer("standardize").output, model.get_layer("impute").output[1]
        if "dates" in names:
            out["cyclic"] = model.get_layer("dates").output[1]
        if "category_ids" in names:
            out["categories"] = model.get_layer("category_ids").output
        for c in prepared.inputs:
            if c.kind == "text":
                out[f"text_{c.served}"] = model.get_layer(f"{c.served}_words").output
        return out

    def core(model):
        cut = boundary(model)
        keys = list(cut)
        rest = keras.Model([cut[k] for k in keys], model.output)  # a list: Keras wants dict keys to be Input names
        signature = {k: tf.TensorSpec([None, v.shape[-1]], tf.int32 if k == "categories" else tf.float32)
                     for k, v in cut.items()}

        def run(x):
            return rest([x[k] for k in keys], training=False)

        if classes:
            return (lambda **x: {"probabilities": run(x)}), signature, rest
        target = prepared.target.served
        return (lambda **x: {target: tf.squeeze(run(x), -1)}), signature, rest

    def spec(model) -> dict:
        names = {layer.name: layer for layer in model.layers}
        inputs = {}
        numbers = names["numbers_raw"].names if "numbers_raw" in names else []
        dates = names["dates"].names if "dates" in names else []
        if "impute" in names:
            medians = names["impute"].medians
            inputs["numbers"] = {"type": "columns", "columns": [
                *({"from": n, "op": "number", "fill": m} for n, m in zip(numbers, medians)),
                *({"from": n, "op": "date_days", "fill": m} for n, m in zip(dates, medians[len(numbers):]))],
                "mean": names["standardize"].mean, "variance": [s * s for s in names["standardize"].scale]}
            inputs["missing"] = {"type": "columns", "columns": [
                *({"from": n, "op": "is_missing"} for n in numbers), *({"from": n, "op": "date_is_missing"}
                                                                      for n in dates)]}
        if dates:
            inputs["cyclic"] = {"type": "columns", "columns": [{"from": n, "op": "date_cyclic"} for n in dates]}
        if "category_ids" in names:
            inputs["categories"] = {"type": "category_ids", "columns": [
                {"from": c["name"], "vocabulary": c["vocabulary"], "numeric": c["numeric"]}
                for c in names["category_ids"].columns]}
        for c in prepared.inputs:
            if c.kind == "text":
                inputs[f"text_{c.served}"] = phone_inputs.text_encoder(names[f"{c.served}_words"], c.served)
        out = {"inputs": inputs}
        if classes:
            out["outputs"] = {"class": {"argmax_of": "probabilities", "names": list(classes)}}
        return out

    return LiteRT(core, spec)


# ---- The closing report ---------------------------------------------------------

def details(splits) -> dict:
    """The served columns with their types, and the first test row as a request."""
    prepared = splits.info["prepared"]
    rows, _ = next(iter(splits.test.batch(1)))
    row = splits.info["reader"].read(np.asarray(rows))
    request = {"instances": [{k: (None if isinstance(v[0], np.floating) and np.isnan(v[0]) else
                                  v[0].decode() if isinstance(v[0], bytes) else float(f"{v[0]:.7g}"))
                              for k, v in row.items()}]}
    body = json.dumps(request).replace("null", "NaN")  # TF Serving reads NaN for a missing number
    left_out = [f"{n} ({k.kind})" for n, k in prepared.kinds.items()
                if n != prepared.target.name and k.kind not in columns.USED]
    return {"Columns": ", ".join(f"{c.served} ({c.kind}, {c.dtype})" for c in prepared.inputs),
            **({"Left out": ", ".join(left_out)} if left_out else {}),
            "A request": body}

"""Your own table: any CSV or TSV, a column to predict, and everything the suite does.

    python -m apps.tabular --data cars.csv --target mpg             # regression: numbers with many values
    python -m apps.tabular --data penguins.csv --target species     # classification: words, few integers
    python -m apps.tabular --data cars.csv --target mpg --ignore name --categorical cylinders
    python -m apps.tabular --explain car.csv --name cars            # one row (a CSV with the header), explained

The file is read once into a columnar cache (pipelines/tables.py), every column
typed (pipelines/columns.py; the run prints the table of what it found and
does), the rows split with the seed, stratified (pipelines/splits.py), and the
split kept in the run folder. The model reads each column as written: numbers
imputed from the training rows and flagged, categories embedded with their own
"missing" and "unseen" values, free text as TF-IDF, dates as their parts (all
inside the graph: apps/tabular_layers.py), so the exported model's
serving_default takes the raw columns by name. The served model is named after
the file (cars.csv: saved_models/cars/) unless --name says otherwise.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import keras
import tensorflow as tf
from keras import layers

from apps import (ensembles, tabular_data, tabular_layers as tl, tabular_parts, tabular_pictures, tabular_ridge,
                  tabular_statistics)
from core.config import ModelSpec
from core.errors import UsageError
from deployment.export import Serving, model_name
from pipelines import columns

NAME = "tabular"
EXPLAIN_INPUT = ("a CSV file of rows with the training file's header (the target column may be left out): each row's "
                 "prediction, and how much each column moved it")
OBJECTIVE = "val_loss"  # what python -m tuning tabular minimises: cross-entropy or mean absolute error, per task
DP_NOT_COVERED = ("the medians, means, deviations, quantile bins and category vocabularies taken from the "
                  "training rows",)


def add_arguments(group):
    add = group.add_argument
    add("--data", metavar="FILE", default="", help="the table: CSV or TSV with a header row (required to train)")
    add("--target", metavar="COLUMN", default="", help="the column to predict (required to train)")
    add("--task", choices=("auto", "regression", "classification"), default="auto",
        help="auto: numbers with many values are regression; words, true/false and a few integers are classification")
    add("--name", metavar="NAME", default="", help="the served model's name (default: the file's name without "
                                                   "its extension): exports go to EXPORT_DIR/NAME/<version>/")
    add("--numeric", action="append", metavar="COLUMNS", help="treat these columns as numbers (comma-separated; "
                                                             "the flag may be repeated)")
    add("--categorical", action="append", metavar="COLUMNS", help="treat these columns as categories")
    add("--text", action="append", metavar="COLUMNS", help="treat these columns as free text (TF-IDF of their words)")
    add("--ignore", action="append", metavar="COLUMNS", help="leave these columns out")
    add("--delimiter", default=None, metavar="CHAR", help="the field delimiter (default: sniffed from the file: "
                                                          "comma, tab, semicolon or bar)")
    add("--encoding", default="utf-8", metavar="NAME", help="the file's text encoding (default utf-8; a byte-order "
                                                            "mark is skipped)")
    add("--skip-bad-rows", action="store_true", help="skip (and count) rows with the wrong number of fields "
                                                     "instead of stopping at the first")
    add("--validation-data", metavar="FILE", default="", help="validation rows from their own file (same columns)")
    add("--test-data", metavar="FILE", default="", help="test rows from their own file (same columns)")
    add("--split-column", metavar="COLUMN", default="", help="a column saying each row's split: train, validation "
                                                             "or test")
    add("--split-fractions", metavar="VALIDATION,TEST", default="0.15,0.15",
        help="the shares of the rows held out for validation and test (default 0.15,0.15), stratified")


def check_config(config):
    """Everything about the data that can be refused is refused here, before the run makes its folder:
    the file is read (once; then from its cache), typed and split (apps/tabular_data.py)."""
    o = config.options
    if config.explain is not None:
        return  # --explain needs an export (--name or --data says which), not the data
    if not o["data"]:
        raise UsageError("--data FILE: name the table to train on (a CSV or TSV with a header row)")
    tabular_data.splitting.parse_fractions(o["split_fractions"])  # a typo costs a second, not a reading pass
    prepared = tabular_data.prepare_once(config)
    # The run's identity includes what the files hold: a changed file starts a new run, never resumes an old one.
    o["data_sha256"] = hashlib.sha256(" ".join(t.cache.name for t in prepared.tables).encode()).hexdigest()[:16]


EPOCHS = 100  # passes over a small table's training rows, ...
STEPS = 20_000  # ... and over a large one's, as many as fit in about this many steps (at least one)


def default_epochs(config) -> int:
    """The ensemble's default --epochs: 100 for up to 12,800 training rows at batch 64, fewer above (a table
    of a million rows gets one pass in 15,625 steps, not a hundred)."""
    if config.explain is not None:
        return EPOCHS
    steps = math.ceil(tabular_data.prepare_once(config).counts["train"] / config.batch_size)
    return max(1, min(EPOCHS, STEPS // steps))


def served_name(config) -> str:
    """The TF Serving model name: --name, or the data file's name without its extension."""
    o = config.options
    return model_name(o["name"] or (Path(o["data"]).stem if o["data"] else ""), NAME, "--data FILE")


# ---- Data -------------------------------------------------------------------

def load_data(config):
    """(row number, label) splits whose values vectorize reads from the table's cache, and what the training
    rows teach the model (apps/tabular_data.py: statistics)."""
    prepared = tabular_data.prepare_once(config)
    smoke = (tabular_data.rows_of(prepared, tabular_data.splitting.TRAIN, config.seed)[0][:tabular_data.SMOKE_ROWS[0]]
             if config.smoke else None)  # --smoke's statistics come from the rows it trains on
    # The statistics first: their temporaries (a column of the training rows at a time) come and go before
    # the datasets hold the row numbers, so a large table's peak memory is the larger of the two, not their sum.
    stats = tabular_statistics.statistics(prepared, config.seed, smoke)
    splits = tabular_data.as_splits(prepared, config, {})
    vectorizers = {}
    served = {c.name: c.served for c in prepared.inputs}
    for name, texts in stats.pop("texts").items():
        vectorizer = layers.TextVectorization(max_tokens=tabular_statistics.TEXT_TOKENS, output_mode="tf_idf",
                                              name=f"{served[name]}_words")
        vectorizer.adapt(tf.constant(texts or [""]), batch_size=4096)
        vectorizers[name] = vectorizer
    return splits._replace(info={**splits.info, "statistics": stats, "vectorizers": vectorizers})


def augment(features, targets, seed):
    return features, targets  # rows are not augmented


# ---- Models -----------------------------------------------------------------

def stage(inputs: dict, info: dict) -> dict:
    """Raw columns -> the numeric tensors the rest of the model (and a LiteRT file) starts from."""
    prepared, stats = info["prepared"], info["statistics"]
    by_kind = {kind: [c for c in prepared.inputs if c.kind == kind] for kind in columns.USED}
    numbers = [c for c in by_kind["number"]]
    categories = [c for c in prepared.inputs if c.kind in ("category", "boolean")]
    out, raw, medians = {}, [], []
    if numbers:
        raw.append(tl.NumberColumns([c.served for c in numbers], name="numbers_raw")(inputs))
        medians += [stats["numbers"][c.name]["median"] for c in numbers]
    if by_kind["date"]:
        days, out["cyclic"] = tl.DateParts([c.served for c in by_kind["date"]], name="dates")(inputs)
        raw.append(days)
        medians += [stats["dates"][c.name]["median"] for c in by_kind["date"]]
    if raw:
        joined = raw[0] if len(raw) == 1 else layers.Concatenate(name="numbers_joined", dtype="float32")(raw)
        imputed, out["missing"] = tl.Impute(medians, name="impute")(joined)
        statistics = number_statistics(info)
        out["numbers"] = tl.Standardize([s["mean"] for s in statistics], [s["scale"] for s in statistics],
                                        name="standardize")(imputed)
    if categories:
        out["categories"] = tl.CategoryIds([category_column(c, stats) for c in categories], name="category_ids")(inputs)
    for c in by_kind["text"]:
        out[f"text_{c.served}"] = info["vectorizers"][c.name](inputs[c.served])
    return out


def number_statistics(info: dict) -> list:
    """The statistics of the number columns, then the dates' days: the order of the numbers tensor."""
    prepared, stats = info["prepared"], info["statistics"]
    return ([stats["numbers"][c.name] for c in prepared.inputs if c.kind == "number"]
            + [stats["dates"][c.name] for c in prepared.inputs if c.kind == "date"])


def category_column(c, stats: dict) -> dict:
    vocabulary = stats["categories"][c.name]
    if c.dtype == "float32":  # 0/1 booleans: matched as numbers
        return {"name": c.served, "numeric": True, "vocabulary": sorted({float(v) for v in vocabulary})}
    return {"name": c.served, "numeric": False, "vocabulary": vocabulary}


def features(staged: dict, info: dict, h: dict):
    """The numeric stage -> (one float vector per row: standardised numbers and their bins, missing flags,
    the dates' periodic parts, an embedding per category, a projection of each text's TF-IDF; the same row
    without what training learns, one-hot categories and no text, which the ridge reads (None: nothing))."""
    prepared, stats = info["prepared"], info["statistics"]
    parts, fixed = [], []
    if "numbers" in staged:
        edges = [[(e - s["mean"]) / s["scale"] for e in s["edges"]] if h["bins"] else []
                 for s in number_statistics(info)]
        parts.append(tl.NumberFeatures(edges, name="number_features")(staged["numbers"]))
        parts.append(staged["missing"])
        fixed += parts
    if "cyclic" in staged:
        parts.append(staged["cyclic"])
        fixed.append(staged["cyclic"])
    if "categories" in staged:
        sizes = [len(category_column(c, stats)["vocabulary"]) + 2 for c in prepared.inputs
                 if c.kind in ("category", "boolean")]
        dimensions = [min(h["embedding"], max(2, round(1.6 * size ** 0.56))) for size in sizes]  # fast.ai's rule
        parts.append(tl.CategoryEmbeddings(sizes, dimensions, name="embeddings")(staged["categories"]))
        fixed.append(tl.OneHot(sizes, name="one_hot")(staged["categories"]))
    for key in [k for k in staged if k.startswith("text_")]:
        # The projection has the members' L2: a column of near-unique short texts (a car's name) is otherwise
        # learned row by row.
        parts.append(layers.Dense(h["text_units"], kernel_regularizer=ensembles.l2(h), name=f"{key}_projection")(
            staged[key]))
    return joined(parts, name="features"), joined(fixed, name="fixed_features", dtype="float32") if fixed else None


def joined(parts: list, **kwargs):
    return parts[0] if len(parts) == 1 else layers.Concatenate(**kwargs)(parts)


def ensemble_space(hp):
    """What `python -m tuning tabular` searches; every default is the untuned default model."""
    hp.Choice("members", [1, 3, 5, 10], default=5)
    hp.Int("hidden_layers", 1, 3, default=2)
    hp.Choice("units", [32, 64, 128, 256], default=128)
    hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.1)
    hp.Choice("l2", [0.0, 1e-5, 1e-4, 1e-3, 1e-2], default=1e-3)
    hp.Boolean("bins", default=True)
    hp.Choice("embedding", [4, 8, 16, 32], default=16)
    hp.Choice("text_units", [8, 16, 32], default=16)
    hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=2e-3)
    hp.Choice("batch_size", [32, 64, 128, 256, 512], default=64)


def build_ensemble(config, splits, steps_per_epoch):
    """The default: a few MLPs side by side on the encoded row, their outputs averaged; AdamW with a
    cosine schedule. Classification averages the members' probabilities and trains on cross-entropy;
    regression averages on the standardised scale and trains on mean absolute error."""
    h, info = config.hparams, splits.info
    prepared = info["prepared"]
    inputs = {c.served: keras.Input((), dtype=c.dtype, name=c.served) for c in prepared.inputs}
    encoded, fixed = features(stage(inputs, info), info, h)
    classes = len(prepared.classes)

    def head(i, x):  # probabilities, or the target on its standardised scale
        return layers.Dense(classes or 1, activation="softmax" if classes else None, dtype="float32",
                            name=f"member{i}_output")(x)

    members = ensembles.members(encoded.shape[-1], h, head, "encoded_row")(encoded)
    if classes:
        model = keras.Model(inputs, members, name="ensemble")
        compiled = dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        target = info["statistics"]["target"]
        if fixed is not None:  # beside the MLPs, a ridge regression; finish() solves it and the blend
            members = tabular_ridge.blended(fixed, members)
        model = keras.Model(inputs, tl.Destandardize(target["mean"], target["scale"], name="prediction")(members),
                            name="ensemble")
        compiled = dict(loss="mae", metrics=["mae"])
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * (steps_per_epoch or 1),
                                                      alpha=0.01)
    return model, dict(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.0), **compiled)


DEFAULT_MODEL = "ensemble"
MODELS = {
    "ensemble": ModelSpec(build_ensemble, epochs=default_epochs, space=ensemble_space, finish=tabular_ridge.finish,
                          help="default: five averaged 128-128 MLPs on standardised and binned numbers, category "
                               "embeddings, date parts and TF-IDF text (regression: blended with a ridge "
                               "regression, the blend chosen on the validation rows)"),
}


# ---- Serving ----------------------------------------------------------------

def serving(config, splits):
    """One named input per used column ([batch] each: float32 for numbers, string for the rest) ->
    regression: the prediction, named after the target; classification: probabilities, class, class_id."""
    prepared = splits.info["prepared"]
    signature = {c.served: tf.TensorSpec([None], tf.float32 if c.dtype == "float32" else tf.string)
                 for c in prepared.inputs}
    if prepared.classes:
        names = tf.constant(prepared.classes)

        def serve(model, **row):
            probabilities = model(row, training=False)
            class_id = tf.argmax(probabilities, axis=-1)
            return {"probabilities": probabilities, "class": tf.gather(names, class_id), "class_id": class_id}

        outputs, metric = ("probabilities", "class", "class_id"), ("accuracy", "probabilities")
    else:
        output = prepared.target.served

        def serve(model, **row):
            return {output: tf.squeeze(model(row, training=False), -1)}

        outputs, metric = (output,), ("mae", output)
    files = {"columns.json": splits.files["columns.json"].decode()}  # what --explain reads the class names from
    return Serving(served_name(config), signature, outputs, serve, files=files, metric=metric,
                   litert=tabular_parts.litert(splits.info), inputs=splits.info["reader"].read)


def serving_inputs(rows):
    """Unused: the splits hold row numbers, which Serving.inputs (the table's Reader) turns into values."""
    raise NotImplementedError("apps.tabular's serving inputs come from Serving.inputs")


# ---- TensorBoard and report -------------------------------------------------

def tensorboard_callbacks(logdir, splits, test, config):
    """At the start the column table and the target; every epoch sample predictions; at the end the
    confusion matrix or predicted against true, permutation importance and explained rows
    (apps/tabular_pictures.py)."""
    return tabular_pictures.pictures(logdir, splits, test)


def explain(model, given: str, version):
    """--explain ROWS.csv (apps/tabular_parts.py)."""
    return tabular_parts.explain_rows(model, given, version)


def details(model, splits, config):
    """The served columns with their types, one test row as a request, and the ridge's share of a
    regression's prediction."""
    return {**tabular_parts.details(splits), **tabular_ridge.details(model)}


if __name__ == "__main__":
    import sys

    from cli.main import main

    raise SystemExit(main(sys.modules[__name__]))

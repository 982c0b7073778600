"""Your own texts: a labelled file or a folder of one folder per label, and everything the suite does.

    python -m apps.text_classifier --data tickets.csv --text-column body --label-column team
    python -m apps.text_classifier --data reviews/ --suffix .txt         # reviews/<label>/*.txt
    python -m apps.text_classifier --explain "the printer is on fire" --name tickets

CSV, TSV or JSON Lines, in any encoding Python knows (--encoding; bytes that do not decode are replaced and
counted), read once into a cache (pipelines/text_files.py). The split: --validation-data / --test-data
files, split folders or --split-column as given, else seeded and stratified by label, kept in the run folder.
The models are apps.sentiment's (apps/text_models.py): by default TF-IDF of word 1-3 grams and of character
1-6 grams within words, so languages written without spaces between words still get features. The exported
serving_default takes raw UTF-8 strings and answers probabilities, class (the label as written in the data)
and class_id. The served model is named after the file or folder unless --name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from apps import sentiment_parts, text_classifier_data as data, text_models
from core.errors import UsageError
from deployment.export import Serving, model_name

NAME = "text_classifier"
OBJECTIVE = "val_accuracy"  # what python -m tuning text_classifier maximises
EXPLAIN_INPUT = "a text (in quotes): its label, and the words the prediction rests on"
DP_NOT_COVERED = text_models.DP_NOT_COVERED


def add_arguments(group):
    add = group.add_argument
    add("--data", metavar="PATH", default="", help="the texts: a CSV, TSV or JSON Lines file, or a folder of one "
                                                   "folder of text files per label (required to train)")
    add("--text-column", metavar="COLUMN", default="text", help="the column (JSON key) holding the text")
    add("--label-column", metavar="COLUMN", default="label", help="the column (JSON key) holding the label")
    add("--suffix", metavar="ENDING", default=".txt", help="a folder's text files end with this (default .txt)")
    add("--encoding", default="utf-8", metavar="NAME", help="the texts' encoding (default utf-8; a byte-order "
                                                            "mark is skipped; bytes that do not decode are replaced "
                                                            "and counted)")
    add("--delimiter", default=None, metavar="CHAR", help="a CSV's field delimiter (default: sniffed)")
    add("--skip-bad-rows", action="store_true", help="skip (and count) rows with the wrong number of fields, or "
                                                     "JSON lines that do not parse, instead of stopping")
    add("--validation-data", metavar="PATH", default="", help="validation texts from their own file or folder")
    add("--test-data", metavar="PATH", default="", help="test texts from their own file or folder")
    add("--split-column", metavar="COLUMN", default="", help="a column saying each text's split: train, "
                                                             "validation or test")
    add("--split-fractions", metavar="VALIDATION,TEST", default="0.15,0.15",
        help="the shares of each label held out for validation and test (default 0.15,0.15)")
    add("--name", metavar="NAME", default="", help="the served model's name (default: the file's or folder's "
                                                   "name): exports go to EXPORT_DIR/NAME/<version>/")
    text_models.add_arguments(group)


def served_name(config) -> str:
    """The TF Serving model name: --name, or the file's name without its extension, or the folder's name."""
    o = config.options
    path = Path(o["data"].rstrip("/\\")) if o["data"] else None
    return model_name(o["name"] or ("" if path is None else path.name if path.is_dir() else path.stem), NAME,
                      "--data PATH")


def check_config(config):
    """Everything about the texts that can be refused is refused here, before the run makes its folder."""
    o = config.options
    text_models.check_options(config)
    if config.explain is not None:
        return
    if not o["data"]:
        raise UsageError("--data PATH: name the texts to train on (a CSV, TSV or JSON Lines file, or a folder "
                         "of one folder per label)")
    data.splitting.parse_fractions(o["split_fractions"])
    prepared = data.prepare_once(config)
    # A changed file is a new run, never a resume of one trained on other texts.
    o["data_fingerprint"] = "-".join(t.cache.name[:12] for t in prepared.sources)
    served_name(config)


def load_data(config):
    splits, texts, read = data.as_splits(data.prepare_once(config), config)
    return text_models.vectorized(config, splits, texts, read=read)


def augment(features, labels, seed):
    return features, labels


STEPS = 1000  # the default --epochs gives about this many steps (apps.sentiment's 4 epochs of tweets: 930) ...
EPOCHS = (4, 50)  # ... within these bounds


def default_epochs(config) -> int:
    """About STEPS steps: 4 epochs of 30,000 texts, 50 of 1,000 (on 742 texts 4 epochs, 24 steps, left the
    languages at 84 % test accuracy, still climbing)."""
    if config.explain is not None:
        return EPOCHS[0]
    train = int(np.sum(data.prepare_once(config).assignment == data.splitting.TRAIN))
    steps = max(1, -(-train // config.batch_size))
    return max(EPOCHS[0], min(EPOCHS[1], -(-STEPS // steps)))


DEFAULT_MODEL = text_models.DEFAULT_MODEL
MODELS = {name: spec._replace(epochs=default_epochs) for name, spec in text_models.MODELS.items()}


# ---- Serving ----------------------------------------------------------------

def serving(config, splits):
    """Raw UTF-8 strings [batch] -> probabilities, class (the label as written in the data), class_id."""
    encode, names = splits.info["encode"], tf.constant(list(splits.info["class_names"]))
    reader = splits.info["reader"]

    def serve(model, text):
        probabilities = model(encode(text), training=False)
        class_id = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "class": tf.gather(names, class_id), "class_id": class_id}

    return Serving(served_name(config), {"text": tf.TensorSpec([None], tf.string)},
                   ("probabilities", "class", "class_id"), serve, splits.info["vectorizers"],
                   sentiment_parts.files(config, splits), metric=("accuracy", "probabilities"),
                   litert=text_models.litert(config, splits, label="class"),
                   inputs=lambda rows: {"text": reader(np.asarray(rows))})


def serving_inputs(features):
    """Unused: the splits hold row numbers, which Serving.inputs turns into the texts."""
    raise NotImplementedError("apps.text_classifier's serving inputs come from Serving.inputs")


# ---- TensorBoard, --explain and report --------------------------------------

def tensorboard_callbacks(logdir, splits, test, config):
    return sentiment_parts.pictures(logdir, splits, config, test)


def explain(model, given: str, version):
    return sentiment_parts.explain_text(model, given, version)


def details(model, splits, config):
    """Macro-F1 beside accuracy, and the served input."""
    return {"test_macro_f1": text_models.macro_f1(model, splits, config.batch_size),
            "serving input": "text: raw UTF-8 strings (TF Serving's REST API: {\"instances\": [\"...\"]})",
            "classes": ", ".join(splits.info["class_names"][:20]) + (" ..." if len(splits.info["class_names"]) > 20
                                                                     else "")}


if __name__ == "__main__":
    import sys

    from cli.main import main

    raise SystemExit(main(sys.modules[__name__]))

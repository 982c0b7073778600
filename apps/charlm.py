"""Character language model: S5's LSTM predicts the next character; exported for TF Serving.

    python -m apps.charlm                            # S5's LSTM LM; perplexity against a bigram model
    python -m apps.charlm --generate "I think"       # continue a prompt with the newest exported LM

Texts: the tweets offline (labels ignored), tiny_shakespeare's lines online.
Its Embedding and LSTM can start the character sentiment model
(python -m apps.sentiment --model lstm --init-from ...): ULMFiT-style transfer.
"""
from __future__ import annotations

import sys

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from apps import characters, charlm_parts
from core.errors import UsageError
from pipelines import text as text_data
from observation import callbacks as cb
from core.config import ModelSpec
from deployment import phone_inputs
from deployment.export import Serving
from deployment.litert import VARIANTS, LiteRT

NAME = "charlm"
EXPLAIN_INPUT = "a prompt (in quotes): its likeliest next character, and the characters behind that prediction"
OBJECTIVE = "val_loss"  # what python -m tuning charlm minimises: the log of per-character perplexity
DP_NOT_COVERED = ("the character vocabulary, learnt from the training texts (unless --init-from brings one): a "
                  "character only one text has is in it",)


def add_arguments(group):
    group.add_argument("--sequence-length", type=int, default=144,
                       help="characters per text (a tweet is at most 140)")
    group.add_argument("--generate", metavar="PROMPT", default=None,
                       help="continue PROMPT with the newest exported language model instead of training")
    group.add_argument("--temperature", type=float, default=0.8, help="--generate: sampling temperature (> 0)")
    group.add_argument("--length", type=int, default=200, help="--generate: characters to generate")


def check_config(config):
    options = config.options
    if options["generate"] is not None and not options["generate"].strip():
        raise UsageError("--generate needs a non-empty prompt")
    if options["temperature"] <= 0 or options["length"] <= 0 or options["sequence_length"] <= 0:
        raise UsageError("--temperature, --length and --sequence-length must be positive")


# ---- Data -------------------------------------------------------------------

def load_data(config):
    """Plain texts; each becomes (ids[:-1], ids[1:]) pairs: every character predicts the next."""
    splits = text_data.lines(config.data_source, config.data_dir, smoke=config.smoke)
    chars = characters.vectorizer(config, text_data.training_texts(splits.train),
                                  config.options["sequence_length"] + 1)

    def vectorize(texts, labels):  # next-character pairs; 0 pads and is masked out of the loss
        ids = chars(characters.between_boundaries(texts))
        return ids[:, :-1], ids[:, 1:]

    return splits._replace(info={**splits.info, "vectorizer": chars}, vectorize=vectorize)


def augment(features, labels, seed):
    return features, labels


# ---- Model ------------------------------------------------------------------

def lstm_space(hp):
    """What `python -m tuning charlm` searches, by validation loss (the log of
    per-character perplexity); every default is S5's model."""
    hp.Choice("embedding_dim", [16, 32, 64], default=32)
    hp.Choice("units", [64, 128, 256], default=128)  # 256 runs about 4x slower than 128 on 2 CPU cores
    hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0)
    hp.Float("learning_rate", 3e-4, 1e-2, sampling="log", default=1e-3)
    hp.Choice("batch_size", [32, 64, 128], default=64)


def build_lstm(config, splits, steps_per_epoch):
    """S5: Embedding -> LSTM -> Dense over the vocabulary; Adam 1e-3; cross-entropy on the next character
    (sizes, dropout and rate from config.hparams, lstm_space).

    The padding id 0 is masked, so neither the loss nor the metrics see padding.
    `embedding` and `lstm` are named as apps.sentiment's lstm names them: the encoder it can start from.
    """
    h = config.hparams
    vocabulary = splits.info["vectorizer"].vocabulary_size()
    inputs = keras.Input((None,), dtype="int64", name="char_ids")
    x = layers.Embedding(vocabulary, h["embedding_dim"], mask_zero=True, name="embedding")(inputs)
    x = layers.LSTM(h["units"], return_sequences=True, name="lstm")(x)
    # On the LSTM's outputs, not inside it: recurrent dropout would rule out the fused GPU kernel.
    x = layers.Dropout(h["dropout"])(x) if h["dropout"] else x
    outputs = layers.Dense(vocabulary, activation="softmax", dtype="float32", name="next_char")(x)
    model = keras.Model(inputs, outputs, name="lstm")
    return model, dict(optimizer=keras.optimizers.Adam(config.learning_rate),
                       loss="sparse_categorical_crossentropy", metrics=["accuracy"])


DEFAULT_MODEL = "lstm"
MODELS = {"lstm": ModelSpec(build_lstm, epochs=4, space=lstm_space, help="S5's Embedding -> LSTM "
                                                                         "-> Dense, per character")}


# ---- Serving ----------------------------------------------------------------

def serving(config, splits):
    """text [B] (prompts) -> probabilities [B, vocabulary] of the next character,
    next_token [B] (the likeliest), unknown_characters [B]."""
    vocabulary = splits.info["vectorizer"].get_vocabulary()
    prompt_ids = layers.TextVectorization(split="character", standardize=None, vocabulary=vocabulary, output_mode="int")
    prompt_ids(tf.constant([characters.BOUNDARY]))  # builds it: only built layers can be exported
    tokens = tf.constant(vocabulary)

    def serve(model, text):
        ids = prompt_ids(tf.strings.join([characters.BOUNDARY, text]))  # [B, longest prompt + 1], 0-padded
        last = tf.math.count_nonzero(ids, axis=1) - 1
        probabilities = tf.gather(model(ids, training=False), last, batch_dims=1)
        return {"probabilities": probabilities, "next_token": tf.gather(tokens, tf.argmax(probabilities, axis=-1)),
                "unknown_characters": tf.reduce_sum(tf.cast(tf.equal(ids, 1), tf.int64), axis=1)}

    return Serving(NAME, {"text": tf.TensorSpec([None], tf.string)},
                   ("probabilities", "next_token", "unknown_characters"), serve, (prompt_ids,),
                   characters.files(splits.info["vectorizer"]), metric=("perplexity", "probabilities"),
                   litert=litert(config, splits),
                   test_set=lambda inputs, _: charlm_parts.next_character_test(inputs["text"], vocabulary,
                                                                              config.options["sequence_length"]))


def litert(config, splits) -> LiteRT:
    """LiteRT: the LSTM over a fixed window of LENGTH character ids, read at the prompt's last
    character (`length`); preprocessing.json maps characters to ids. Prompts of at most
    LENGTH - 1 characters give what TF Serving gives. Full-integer LSTMs crash TF 2.21's
    converter (deployment/litert.py): float32, dynamic range and float16 only."""
    window = config.options["sequence_length"]  # the model's input length: the boundary + the text

    def core(model):
        def fn(char_ids, length):
            every = model(char_ids, training=False)  # [B, window, vocabulary]; 0-padding after the prompt is masked
            return {"probabilities": tf.gather(every, tf.maximum(length - 1, 0), batch_dims=1)}

        # Batch 1, as a phone runs it: with static shapes the converter fuses the LSTM (with a
        # dynamic batch it fails to lower the loop's tensor lists).
        return fn, {"char_ids": tf.TensorSpec([1, window], tf.int64), "length": tf.TensorSpec([1], tf.int64)}

    vectorizer = splits.info["vectorizer"]
    ids = {**phone_inputs.text_encoder(vectorizer, "text", prefix=characters.BOUNDARY), "length": window}
    length = {**phone_inputs.text_encoder(vectorizer, "text", prefix=characters.BOUNDARY, kind="text_length"),
              "length": window}
    spec = {"inputs": {"char_ids": ids, "length": length},
            "outputs": {"next_token": {"argmax_of": "probabilities", "names": vectorizer.get_vocabulary()}}}
    return LiteRT(core, spec, tuple(v for v in VARIANTS if v != "int8"))


def serving_inputs(features):
    return {"text": np.asarray(features)}


# ---- TensorBoard and report -------------------------------------------------

def tensorboard_callbacks(logdir, splits, test, config):
    prompts = [t.decode("utf-8")[:20] for t, _ in splits.test.take(4).as_numpy_iterator()]
    vectorizer = splits.info["vectorizer"]
    return [*charlm_parts.pictures(logdir, prompts, vectorizer),
            cb.EmbeddingProjector(logdir, vectorizer.get_vocabulary())]


def explain(model, given: str, version):
    """--explain PROMPT (apps/charlm_parts.py)."""
    return charlm_parts.explain_prompt(model, given, version)


def details(model, splits, config):
    """Perplexity against a bigram model, and how the corpus was cleaned."""
    return {**charlm_parts.perplexities(model, splits), **{f"corpus_{k}": v for k, v in splits.info["counts"].items()}}


def generate_or_train(app, config):
    """--generate PROMPT continues a prompt with the newest exported model; otherwise the run trains."""
    from cli.main import train

    if config.options["generate"] is None:
        return train(app, config)
    print(charlm_parts.generate(config))


if __name__ == "__main__":
    from cli.main import main

    raise SystemExit(main(sys.modules[__name__], action=generate_or_train))

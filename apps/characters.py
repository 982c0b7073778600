"""Characters as token ids: what the character language model and the character
sentiment model share, so the one can start the other (ULMFiT-style transfer).

Every text is read between two BOUNDARY marks ("\\n": texts have no newlines),
characters as they are (no lower-casing). The vocabulary is every character
of the training texts, most frequent first, after 0 (padding) and 1 ([UNK]).
A model trained on one vocabulary only makes sense with the same ids, so a
run started from another model (--init-from) takes that model's vocabulary,
written beside it as VOCABULARY_FILE, instead of learning its own.
"""
from __future__ import annotations

import json

import tensorflow as tf
from keras import layers

from core.errors import UsageError
from training import transfer

BOUNDARY = "\n"
VOCABULARY_FILE = "vocabulary.json"
MAX_CHARACTERS = 200  # the ids the embedding has room for: far more than a corpus's distinct characters


def between_boundaries(texts: tf.Tensor) -> tf.Tensor:
    return tf.strings.join([BOUNDARY, texts, BOUNDARY])


def vectorizer(config, texts, length: int) -> layers.TextVectorization:
    """Character ids, `length` per text (0-padded); the vocabulary of --init-from's model if it has one,
    else learnt from the training texts (`texts`: the training split's texts, batched)."""
    layer = layers.TextVectorization(max_tokens=MAX_CHARACTERS, split="character", standardize=None,
                                     output_mode="int", output_sequence_length=length, name="chars")
    inherited = transfer.source_file(config, VOCABULARY_FILE)
    if inherited is None:
        layer.adapt(texts.map(between_boundaries))  # the training split only
        return layer
    try:
        vocabulary = json.loads(inherited.read_text())
        layer.set_vocabulary(vocabulary)  # as get_vocabulary() gave it: padding and [UNK] first
    except (ValueError, TypeError) as err:
        raise UsageError(f"--init-from: {inherited} is not a vocabulary of characters ({err})") from None
    print(f"character vocabulary: the {len(vocabulary)} ids of {inherited}", flush=True)
    return layer


def files(vectorizer_layer) -> dict:
    """The vocabulary as written beside the model and into its export: what --init-from reads back."""
    return {VOCABULARY_FILE: json.dumps(vectorizer_layer.get_vocabulary())}

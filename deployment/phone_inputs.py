"""What a phone app does to raw inputs before the LiteRT file: written down as JSON, and done here in NumPy.

LiteRT has no built-in string ops (TextVectorization, tf.strings need "Flex"
ops, which Python's LiteRT interpreter cannot run), so a model that takes text
or a car's name is converted without them: its `.tflite` file takes numbers,
and `preprocessing.json` beside it says exactly how raw inputs become those
numbers. `prepare()` below is that recipe in plain Python and NumPy, reading
nothing but the JSON: the export checks that raw inputs through the SavedModel
and through prepare() + the `.tflite` give the same predictions, so a phone
app that follows the JSON (docs/deployment.md, LiteRT) computes what TF Serving does.

The JSON: {"inputs": {<tflite input>: <encoder>}} where an encoder is one of
  {"type": "raw", "from": NAME, "dtype": D}               the raw input, cast to D
  {"type": "text_ids", "from": NAME, ...text steps..., "length": L, "dtype": D}
      token ids: the vocabulary's index of each token (1 when unknown, the
      "[UNK]" entry), cut or 0-padded to L
  {"type": "text_tf_idf", "from": NAME, ...text steps...}
      one float per vocabulary entry: the token's count in the text times its
      "idf" weight (unknown tokens count towards entry 0, "[UNK]")
  {"type": "text_length", "from": NAME, ...text steps..., "length": L}
      the number of tokens, at most L (where a sequence model's answer is read)
  {"type": "category_ids", "columns": [{"from": NAME, "vocabulary": V, "numeric": B}]}
      int32 [batch, columns]: 1 + the value's index in V, 0 when it is not in V, len(V) + 1 when
      missing; a string is stripped of surrounding spaces first, a numeric column matches numbers
  {"type": "columns", "columns": [...]}                  one float vector per example:
      {"from": NAME, "op": "number"}                     the value as a float
      {"from": NAME, "op": "number", "fill": F}          the value as a float, F where it is missing (NaN or a
                                                         MISSING word)
      {"from": NAME, "op": "date_days", "fill": F}       a date (DATE: year first) as days since 1970-01-01,
                                                         F if not one
      {"from": NAME, "op": "is_missing"}                 1.0 where a number is NaN or a string is MISSING
      {"from": NAME, "op": "date_is_missing"}            1.0 where the value is not such a date
      {"from": NAME, "op": "date_cyclic"}                sine and cosine of month, weekday, day of year and hour
                                                         (8 floats; 0 where not a date): apps/tabular_layers.py
      {"from": NAME, "op": "one_hot", "vocabulary": V}   [unknown, V...] as 0/1
      {"from": NAME, "op": "maker_one_hot", "aliases": A, "vocabulary": V}
           the name's first word, ASCII-lower-cased, renamed by A, then one_hot
      {"from": NAME, "op": "contains", "text": T}        1.0 if the ASCII-lower-cased name contains T
      then, with "mean" and "variance" (one per column): (x - mean) / max(sqrt(variance), 1e-7)
  {"type": "image", "from": NAME, "size": S, "channels": C}
      encoded picture bytes -> uint8 [batch, S, S, C]: decoded by content (JPEG, PNG, GIF's first frame,
      BMP, WebP), transparency laid over white, grey by luma (0.2989 R + 0.587 G + 0.114 B) when C is 1,
      stretched to S x S by antialiased bilinear resizing, rounded. Done here with TensorFlow's own
      decoder (pipelines/image_files.py: decode); a phone's decoder and resizer land within a grey level
      or two of it.
text steps, in order: "prefix" and "suffix" added; "standardize": null, "lower"
(ASCII letters only, as tf.strings.lower) or "lower_and_strip_punctuation"
(then every character of PUNCTUATION removed); "split": "whitespace" (runs of
ASCII whitespace, ends stripped), "character" (Unicode code points) or
"character_ngrams_within_words" (each whitespace-split word padded as " word ",
then its runs of n code points for each n in "widths", joined with nothing);
"ngrams": [n, ...] (tokens n at a time, joined by one space), then the vocabulary.
"""
from __future__ import annotations

import math
import re

import numpy as np

from pipelines.tables import DATE, MISSING

PUNCTUATION = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\''  # Keras' strip_punctuation set
_PUNCTUATION = re.compile("[" + re.escape(PUNCTUATION) + "]")
_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")
_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


# ---- From Keras layers: the JSON a model's own preprocessing amounts to ------

def text_encoder(vectorizer, source: str, prefix: str = "", suffix: str = "", kind: str | None = None) -> dict:
    """The encoder of a Keras TextVectorization (its vocabulary, idf weights, ...) reading `source`."""
    config = vectorizer.get_config()
    # A callable split can be written down only if it says how (pipelines/text.py: CharacterNgramsWithinWords).
    split = config["split"].phone_recipe() if hasattr(config["split"], "phone_recipe") else {"split": config["split"]}
    if callable(config["standardize"]) or callable(split["split"]):
        raise ValueError(f"{vectorizer.name}: a callable standardize or split cannot be written down for a phone")
    ngrams = config["ngrams"]
    encoder = {"from": source, "prefix": prefix, "suffix": suffix, "standardize": config["standardize"], **split,
               "ngrams": list(range(1, ngrams + 1)) if isinstance(ngrams, int) else list(ngrams or [1]),
               "vocabulary": [t.decode() if isinstance(t, bytes) else t for t in vectorizer.get_vocabulary()]}
    mode = config["output_mode"]
    if kind == "text_length":
        return {"type": kind, **encoder, "length": config["output_sequence_length"]}
    if mode == "int":
        return {"type": "text_ids", **encoder, "length": config["output_sequence_length"], "dtype": "int64"}
    if mode == "tf_idf":
        idf = np.asarray(vectorizer._lookup_layer.idf_weights)
        return {"type": "text_tf_idf", **encoder, "idf": [float(w) for w in idf]}
    raise ValueError(f"{vectorizer.name}: output_mode {mode!r} has no phone encoder")


# ---- The recipe in NumPy ----------------------------------------------------

def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def tokens(encoder: dict, text: str) -> list[str]:
    text = encoder.get("prefix", "") + text + encoder.get("suffix", "")
    if encoder["standardize"] in ("lower", "lower_and_strip_punctuation"):
        text = text.translate(_ASCII_UPPER)
    if encoder["standardize"] == "lower_and_strip_punctuation":
        text = _PUNCTUATION.sub("", text)
    if encoder["split"] == "whitespace":
        parts = [p for p in _ASCII_SPACE.split(text) if p]
    elif encoder["split"] == "character":
        parts = list(text)
    elif encoder["split"] == "character_ngrams_within_words":  # each word as " word ", its n-grams of each width
        parts = [padded[i:i + n] for padded in (f" {w} " for w in _ASCII_SPACE.split(text) if w)
                 for n in encoder["widths"] for i in range(len(padded) - n + 1)]
    else:
        raise ValueError(f"unknown split {encoder['split']!r}")
    grams = encoder.get("ngrams", [1])
    if grams == [1]:
        return parts
    return [" ".join(parts[i:i + n]) for n in grams for i in range(len(parts) - n + 1)]


def _index(encoder: dict) -> dict:
    if "_index" not in encoder:  # built once per encoder: a dict lookup per token
        encoder["_index"] = {token: i for i, token in enumerate(encoder["vocabulary"])}
    return encoder["_index"]


def _first_word(name: str) -> str:
    words = name.translate(_ASCII_UPPER).split()
    return words[0] if words else ""


def days_from_civil(year, month, day):
    """Days since 1970-01-01 (H. Hinnant's integer algorithm; apps/tabular_layers.py computes the same)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    return era * 146097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719468


def _is_missing(value) -> bool:
    if isinstance(value, (bytes, str)):
        return _text(value).strip().lower() in MISSING
    return bool(np.isnan(np.float32(value)))


def _date(value) -> tuple | None:
    """(days since 1970, month, weekday, day of year, hour) of an ISO date, None if it is not one."""
    text = _text(value).strip()
    if not DATE.match(text):
        return None
    year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    days = days_from_civil(year, month, day)
    hour = int(text[11:13]) if len(text) >= 13 else 0
    return days, month, (days + 3) % 7, days - days_from_civil(year, 1, 1), hour


def _cyclic(parts: tuple | None) -> list:
    if parts is None:
        return [0.0] * 8
    _, month, weekday, day_of_year, hour = parts
    phases = [np.float32(month - 1) / np.float32(12), np.float32(weekday) / np.float32(7),
              np.float32(day_of_year) / np.float32(366), np.float32(hour) / np.float32(24)]
    return [f(np.float32(2 * math.pi) * p) for p in phases for f in (np.sin, np.cos)]


def _column(column: dict, values) -> np.ndarray:
    op = column["op"]
    if op == "number":
        if "fill" in column:
            return np.array([[column["fill"] if _is_missing(v) else float(v)] for v in values], np.float32)
        return np.asarray(values, np.float32)[:, None]
    if op == "is_missing":
        return np.array([[_is_missing(v)] for v in values], np.float32)
    if op in ("date_days", "date_is_missing", "date_cyclic"):
        parts = [_date(v) for v in values]
        if op == "date_days":
            return np.array([[column["fill"] if p is None else p[0]] for p in parts], np.float32)
        if op == "date_is_missing":
            return np.array([[p is None] for p in parts], np.float32)
        return np.array([_cyclic(p) for p in parts], np.float32)
    if op == "contains":
        return np.array([[column["text"] in _text(v).translate(_ASCII_UPPER)] for v in values], np.float32)
    if op == "maker_one_hot":
        values = [column["aliases"].get(w, w) for w in (_first_word(_text(v)) for v in values)]
    elif op != "one_hot":
        raise ValueError(f"unknown column op {op!r}")
    vocabulary = [str(v) for v in column["vocabulary"]]
    out = np.zeros((len(values), len(vocabulary) + 1), np.float32)  # slot 0: not in the vocabulary
    for row, value in enumerate(values):
        key = _text(value) if not isinstance(value, (int, np.integer)) else str(int(value))
        out[row, vocabulary.index(key) + 1 if key in vocabulary else 0] = 1.0
    return out


def _category_ids(column: dict, values) -> np.ndarray:
    vocabulary, missing = column["vocabulary"], len(column["vocabulary"]) + 1
    if column["numeric"]:
        index = {np.float32(v): i + 1 for i, v in enumerate(vocabulary)}
        return np.array([missing if np.isnan(np.float32(v)) else index.get(np.float32(v), 0) for v in values], np.int32)
    index = {v: i + 1 for i, v in enumerate(vocabulary)}
    return np.array([missing if _is_missing(v) else index.get(_text(v).strip(), 0) for v in values], np.int32)


def _images(encoder: dict, data) -> np.ndarray:
    import tensorflow as tf

    from pipelines.image_files import decode

    size, channels = encoder["size"], encoder["channels"]
    pictures = [decode(tf.constant(b), size, channels).numpy() for b in np.asarray(data, object).tolist()]
    return np.stack(pictures) if pictures else np.zeros((0, size, size, channels), np.uint8)


def encode(encoder: dict, raw: dict) -> np.ndarray:
    """One tflite input for a batch of raw examples."""
    kind = encoder["type"]
    if kind == "raw":
        return np.asarray(raw[encoder["from"]]).astype(encoder["dtype"])
    if kind == "columns":
        out = np.concatenate([_column(c, np.asarray(raw[c["from"]]).tolist()) for c in encoder["columns"]], axis=1)
        if "mean" in encoder:  # standardised as Keras' Normalization does it
            scale = np.maximum(np.sqrt(np.asarray(encoder["variance"], np.float32)), np.float32(1e-7))
            out = (out - np.asarray(encoder["mean"], np.float32)) / scale
        return out.astype(np.float32)
    if kind == "image":
        return _images(encoder, raw[encoder["from"]])
    if kind == "category_ids":
        return np.stack([_category_ids(c, np.asarray(raw[c["from"]]).tolist()) for c in encoder["columns"]], axis=1)
    texts = [_text(t) for t in np.asarray(raw[encoder["from"]]).tolist()]
    if kind == "text_length":
        return np.array([min(len(tokens(encoder, t)), encoder["length"]) for t in texts], np.int64)
    index = _index(encoder)
    if kind == "text_ids":
        out = np.zeros((len(texts), encoder["length"]), encoder["dtype"])
        for row, text in enumerate(texts):
            ids = [index.get(t, 1) for t in tokens(encoder, text)][:encoder["length"]]
            out[row, :len(ids)] = ids
        return out
    if kind == "text_tf_idf":
        idf = np.asarray(encoder["idf"], np.float32)
        out = np.zeros((len(texts), len(idf)), np.float32)
        for row, text in enumerate(texts):
            for token in tokens(encoder, text):
                out[row, index.get(token, 0)] += 1.0
        return out * idf
    raise ValueError(f"unknown encoder type {kind!r}")


def prepare(spec: dict, raw: dict) -> dict:
    """Raw serving inputs (a batch, as the SavedModel takes them) -> the .tflite file's inputs."""
    return {name: encode(encoder, raw) for name, encoder in spec["inputs"].items()}


def public(spec: dict) -> dict:
    """The spec without the lookup caches prepare() adds: what preprocessing.json holds."""
    return {"inputs": {name: {k: v for k, v in e.items() if not k.startswith("_")}
                       for name, e in spec["inputs"].items()},
            **{k: v for k, v in spec.items() if k != "inputs"}}

"""LiteRT (TensorFlow Lite) files for phones and edge devices, written into each export.

Each export's `litert/` folder (inside the version folder, which TF Serving
reads only the SavedModel files of) holds up to four files of the same model:
  model_float32.tflite        the float model
  model_dynamic_range.tflite  int8 weights, float activations (about 4x smaller)
  model_float16.tflite        float16 weights (about 2x smaller; GPUs delegates run it natively)
  model_int8.tflite           full integer: int8 weights and activations, calibrated
                              on REPRESENTATIVE examples of the training split;
                              float inputs and outputs, as the float file's
and `preprocessing.json` (deployment/phone_inputs.py): how raw inputs become the
file's inputs when the model's own preprocessing uses string ops LiteRT lacks.
A file that loses more than the metric's tolerance against the SavedModel on
the test set is not kept (deployment/export.py decides; deployment/check.py measures).

Conversion runs in the fresh process that checks the export: the converter is
native code, and on an LSTM its full-integer path has crashed the process
(TF 2.21), which must not take the training run down with it.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

VARIANTS = ("float32", "dynamic_range", "float16", "int8")
REPRESENTATIVE = 200  # training examples that calibrate the int8 file's activation ranges
FOLDER = "litert"
PREPROCESSING = "preprocessing.json"


class LiteRT(NamedTuple):
    """How an app's model becomes LiteRT files (Serving.litert).

    core(model) -> (fn, {input name: tf.TensorSpec}[, the part of model fn uses]):
        the numeric part of the served function; None: the served function
        itself (its inputs are numeric). Naming the part keeps lookup tables
        fn does not use out of the converter's way.
    preprocessing: {"inputs": {core input: encoder}, ...} (deployment/phone_inputs.py),
        or a function of the model that returns it, or None when the core
        takes the raw inputs as they are.
    variants: the files to write; an LSTM leaves out int8 (see the module doc).
    """

    core: Callable | None = None
    preprocessing: dict | None = None
    variants: tuple = VARIANTS


def file_name(variant: str) -> str:
    return f"model_{variant}.tflite"


def raw_preprocessing(signature: dict) -> dict:
    """The identity recipe for a core that takes the served inputs themselves."""
    return {"inputs": {name: {"type": "raw", "from": name, "dtype": spec.dtype.name}
                       for name, spec in signature.items()}}


def write_core(litert: LiteRT, model, path: Path) -> None:
    """The numeric core as a SavedModel of its own: the converter's input (it keeps input and output names)."""
    import keras
    import tensorflow as tf

    fn, signature, *part = litert.core(model)
    names = list(signature)
    specs = [tf.TensorSpec(s.shape, s.dtype, name=n) for n, s in signature.items()]
    archive = keras.export.ExportArchive()
    archive.track(part[0] if part else model)
    archive.add_endpoint("serving_default", lambda *x: fn(**dict(zip(names, x))), input_signature=specs)
    archive.write_out(str(path), verbose=False)


def convert(saved_model: Path, variant: str, representative: dict | None) -> bytes:
    """One LiteRT file from a SavedModel's serving_default (representative: prepared inputs, int8 only)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        rows = len(next(iter(representative.values())))
        converter.representative_dataset = lambda: ({k: v[i:i + 1] for k, v in representative.items()}
                                                    for i in range(rows))
        # fail rather than fall back to float
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def refusal(err: Exception) -> str:
    """The converter's refusal as one readable line: what it could not convert and why, never its MLIR.

    TF 2.21's ConverterError is a page of MLIR locations; what a person needs is in its error
    lines: the TensorFlow ops it has no LiteRT kernel for, its error codes, or the first message.
    """
    text = str(err)
    ops = list(dict.fromkeys(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text)))
    codes = list(dict.fromkeys(re.findall(r"Error code: (\w+)", text)))
    types = list(dict.fromkeys(re.findall(r"tensor<[^>]*x(f16|bf16)>", text)))
    if ops:
        line = (f"the converter refused {len(ops)} TensorFlow op(s) that have no LiteRT builtin kernel: "
                f"{', '.join(ops[:5])}{', ...' if len(ops) > 5 else ''}")
        line += f" (on {'/'.join(types)} tensors)" if types else ""
    else:
        messages = [_without_locations(m) for m in re.findall(r"error: (.*)", text)]
        first = next((m for m in messages if m), "") or (text.strip().splitlines() or [type(err).__name__])[0]
        line = f"the converter refused the model: {first[:200]}"
    return line + (f" [{', '.join(codes)}]" if codes else "")


def _without_locations(message: str) -> str:
    """An MLIR error message without its leading loc(...) (nested parentheses) and the colon after it."""
    message = message.strip()
    if not message.startswith("loc("):
        return message
    depth = 0
    for i, char in enumerate(message):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char == ")":
            return message[i + 1:].lstrip(": ").strip()
    return ""


def crash(signal_number: str | int) -> str:
    """A converter crash (native code killed the checking process) as one line."""
    import signal

    try:
        name = signal.Signals(int(signal_number)).name
    except ValueError:
        name = f"signal {signal_number}"
    return f"the converter crashed ({name}) converting this model"


class Runner:
    """A LiteRT file in the maintained runtime (ai-edge-litert; tf.lite.Interpreter is deprecated)."""

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        self.runner = self.interpreter.get_signature_runner("serving_default")
        self.inputs = self.runner.get_input_details()  # name -> {"dtype", "shape", ...}

    def __call__(self, feeds: dict) -> dict:
        return self.runner(**{k: np.asarray(v, self.inputs[k]["dtype"]) for k, v in feeds.items()})

    def one_by_one(self, feeds: dict) -> tuple[dict, np.ndarray]:
        """Every example at batch 1, as a phone runs it: (outputs stacked, seconds per call)."""
        rows = len(next(iter(feeds.values())))
        outputs, seconds = {}, np.empty(rows)
        for i in range(rows):
            one = {k: v[i:i + 1] for k, v in feeds.items()}
            start = time.perf_counter()
            out = self(one)
            seconds[i] = time.perf_counter() - start
            for k, v in out.items():
                outputs.setdefault(k, []).append(v[0])
        return {k: np.stack(v) for k, v in outputs.items()}, seconds


def latency(seconds: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(seconds, 50)) * 1e3, 4),
            "p99_ms": round(float(np.percentile(seconds, 99)) * 1e3, 4)}


def write_preprocessing(folder: Path, spec: dict) -> None:
    from deployment.phone_inputs import public

    folder.mkdir(parents=True, exist_ok=True)
    (folder / PREPROCESSING).write_text(json.dumps(public(spec)))

"""Export for TF Serving: numbered SavedModel versions, written atomically and verified.

TF Serving watches EXPORT_DIR/<app>/ and loads the highest integer folder. So a
version is first written to a hidden temporary folder, reloaded in a fresh
Python process and compared with the in-memory model, and only then renamed
into place: Serving never sees a half-written or broken version, and earlier
versions are never touched.

Run as a module, this file is that fresh process:
    python -m training.export verify DIR INPUTS.npz EXPECTED.npz
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

VERIFY_TOLERANCE = 1e-5


def existing_versions(base: Path) -> list[int]:
    if not base.exists():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(base: Path) -> int:
    versions = existing_versions(base)
    return versions[-1] + 1 if versions else 1


class Serving(NamedTuple):
    """What an app exports, from app.serving(config, splits).

    name: the TF Serving model name, i.e. the folder under EXPORT_DIR (an app
        whose variants take different inputs gives each its own name, so one
        model's versions always share one signature).
    signature: input name -> tf.TensorSpec of the raw inputs serving_default takes.
    outputs: the names of the dict serve() returns.
    serve(model, **inputs) -> dict of output tensors.
    track: objects serve() uses besides the model whose resources the
        SavedModel must hold (a TextVectorization's vocabulary table).
    """

    name: str
    signature: dict
    outputs: tuple
    serve: Callable
    track: tuple = ()
    files: dict = {}  # extra files written into each version folder: name -> text (the LM's vocabulary)


def serving_endpoint(serving: Serving, model):
    """(fn, input_signature) for serving.serve, every input named after the signature keys."""
    import tensorflow as tf

    names = list(serving.signature)
    specs = [tf.TensorSpec(s.shape, s.dtype, name=n) for n, s in serving.signature.items()]

    def serve(*tensors):
        return serving.serve(model, **dict(zip(names, tensors)))

    return serve, specs


def write_saved_model(serving: Serving, model, path: Path) -> None:
    import keras

    serve, specs = serving_endpoint(serving, model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for extra in serving.track:
        archive.track(extra)
    archive.add_endpoint("serving_default", serve, input_signature=specs)
    archive.write_out(str(path), verbose=False)


def _json_value(value):
    value = np.asarray(value).tolist()
    return value.decode("utf-8") if isinstance(value, bytes) else value


def sample_request(inputs: dict, rows: int = 2) -> dict:
    """A TF Serving REST body ("instances" with named inputs) for the first rows."""
    return {
        "signature_name": "serving_default",
        "instances": [{name: _json_value(v[i]) for name, v in inputs.items()} for i in range(rows)],
    }


def export_version(serving: Serving, model, config, base: Path, inputs: dict, chief: bool = True,
                   keras_file: Path | None = None) -> Path | None:
    """Write, verify and publish the next version under base; returns its folder.

    inputs: a small batch of raw serving inputs (real test examples), used to
    compare the reloaded SavedModel with the in-memory model.
    keras_file: the model as Keras saved it, copied in as model.keras (TF
    Serving ignores it; --init-from and keras.saving.load_model read it).
    Non-chief workers of a multi-worker run write to a scratch folder and
    discard it: saving distributed variables is a collective step all must join.
    """
    import tensorflow as tf

    if not chief:
        with tempfile.TemporaryDirectory() as scratch:
            write_saved_model(serving, model, Path(scratch) / "model")
        return None
    base.mkdir(parents=True, exist_ok=True)
    version = next_version(base)
    staging = base / f".tmp-{version}-{os.getpid()}"
    try:
        write_saved_model(serving, model, staging)
        (staging / "run_config.json").write_text(config.to_json())
        (staging / "sample_request.json").write_text(json.dumps(sample_request(inputs)))
        for name, text in serving.files.items():
            (staging / name).write_text(text)
        if keras_file is not None:
            shutil.copyfile(keras_file, staging / "model.keras")
        serve, _ = serving_endpoint(serving, model)
        expected = {k: np.asarray(v) for k, v in serve(*[tf.constant(v) for v in inputs.values()]).items()}
        verify_in_fresh_process(staging, inputs, expected)
        return publish(staging, base)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, base: Path, attempts: int = 20) -> Path:
    """Rename the verified staging folder to the next free version, atomically.

    rename() refuses to replace a non-empty folder, so when another run
    publishes the same number first, this one takes the next number instead.
    """
    for _ in range(attempts):
        final = base / str(next_version(base))
        try:
            os.rename(staging, final)
            return final
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    raise RuntimeError(f"could not find a free version number under {base}")


def _storable(arrays: dict) -> dict:
    """Strings as fixed-width bytes: .npz stores object arrays only by pickling."""
    return {k: np.asarray(v).astype(bytes) if np.asarray(v).dtype == object else np.asarray(v) for k, v in arrays.items()}


def verify_in_fresh_process(path: Path, inputs: dict, expected: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "inputs.npz", **_storable(inputs))
        np.savez(Path(tmp) / "expected.npz", **_storable(expected))
        result = subprocess.run(
            [sys.executable, "-m", "training.export", "verify", str(path), f"{tmp}/inputs.npz", f"{tmp}/expected.npz"],
            capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent,
        )
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the exported SavedModel failed verification in a fresh process: {tail}")


def verify(path: str, inputs_file: str, expected_file: str) -> str:
    """Load the SavedModel, call serving_default on inputs, compare with expected."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    inputs = dict(np.load(inputs_file))
    expected = dict(np.load(expected_file))
    outputs = _storable({k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()})
    if set(outputs) != set(expected):
        raise AssertionError(f"outputs {sorted(outputs)} != expected {sorted(expected)}")
    for name, want in expected.items():
        got = outputs[name]
        same = (np.array_equal(got, want) if want.dtype.kind in "OSU"  # label names
                else np.allclose(got, want, atol=VERIFY_TOLERANCE))
        if got.shape != want.shape or not same:
            raise AssertionError(f"output {name!r} differs from the in-memory model")
    return f"verified {path}: outputs {sorted(outputs)} match on {len(next(iter(inputs.values())))} examples"


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "verify":
        sys.exit("usage: python -m training.export verify DIR INPUTS.npz EXPECTED.npz")
    print(verify(*sys.argv[2:]))

"""Export for TF Serving: numbered SavedModel versions, written atomically and verified.

TF Serving watches EXPORT_DIR/<app>/ and loads the highest integer folder. So a
version is first written to a hidden temporary folder, reloaded in a fresh
Python process and compared with the in-memory model, and only then renamed
into place: Serving never sees a half-written or broken version, and earlier
versions are never touched.

The fresh process is deployment/check.py: it loads the version as Python
and as TF Serving do, scores it and the newest published version on the test
set, and converts and scores its LiteRT files. deployment/gate.py then keeps
the LiteRT files within tolerance and applies the publishing gate.
"""
from __future__ import annotations

import base64

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from deployment import gate, precision


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
    metric: tuple = ()  # (kind, output) of deployment/scores.py: what LiteRT files and new versions are judged by
    litert: object = None  # deployment/litert.py: LiteRT, how the model becomes .tflite files; None: none
    test_set: Callable | None = None  # (inputs, targets) -> (inputs, targets) scored: the test split by default
    # A batch of the splits' features -> the served inputs, where the app's serving_inputs cannot tell
    # (a user's table: its splits hold row numbers, read from the table's cache).
    inputs: Callable | None = None


def serving_endpoint(serving: Serving, model):
    """(fn, input_signature) for serving.serve, every input named after the signature keys.

    Float outputs are float32 whatever the model computes in (a float16 or bfloat16
    model's clients get the same signature as a float32 model's).
    """
    import tensorflow as tf

    names = list(serving.signature)
    specs = [tf.TensorSpec(s.shape, s.dtype, name=n) for n, s in serving.signature.items()]

    def serve(*tensors):
        outputs = serving.serve(model, **dict(zip(names, tensors)))
        return {k: tf.cast(v, tf.float32) if v.dtype in (tf.float16, tf.bfloat16) else v for k, v in outputs.items()}

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


def model_name(given: str, app: str, what: str) -> str:
    """A served model's name from --name or the user's data (`what`: "--data FILE"), as a folder and TF
    Serving name: letters, digits, _ . - (others become _)."""
    from core.errors import UsageError

    if not given:
        raise UsageError(f"--explain with apps.{app}: say which model with --name NAME (or {what}, or "
                         "--explain-model PATH)")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", given).strip("_.-")
    if not name:
        raise UsageError(f"--name {given!r}: a model name needs letters or digits")
    return name


def _json_value(value):
    array = np.asarray(value)
    if array.dtype == np.float32:  # 50.4, not float64's 50.400001525878906: numpy's shortest float32 digits
        return np.array([float(str(x)) for x in array.ravel()], dtype=object).reshape(array.shape).tolist()
    value = array.tolist()
    if isinstance(value, bytes):  # text as itself; other bytes (an encoded picture) as TF Serving's {"b64": ...}
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def sample_request(inputs: dict, rows: int = 2) -> dict:
    """A TF Serving REST body ("instances" with named inputs) for the first rows."""
    return {
        "signature_name": "serving_default",
        "instances": [{name: _json_value(v[i]) for name, v in inputs.items()} for i in range(rows)],
    }


class Exported(NamedTuple):
    """What export_version did: the published version (or None), the folder a
    version held back by the gate went to (or None), and lines for the user."""

    path: Path | None
    held: Path | None = None
    lines: tuple = ()


class TestSet(NamedTuple):
    """The test split as serving inputs: what LiteRT files and new versions are scored on."""

    inputs: dict  # raw serving inputs, every test example
    targets: np.ndarray
    representative: dict  # raw serving inputs of REPRESENTATIVE training examples (int8 calibration)


def export_version(serving: Serving, model, config, base: Path, inputs: dict, chief: bool = True,
                   keras_file: Path | None = None, test: TestSet | None = None) -> Exported:
    """Write, check and publish (or hold back) the next version under base.

    inputs: a small batch of raw serving inputs (real test examples), used to
    compare the reloaded SavedModel with the in-memory model.
    keras_file: the model as Keras saved it, copied in as model.keras (TF
    Serving ignores it; --init-from and keras.saving.load_model read it).
    test: with serving.metric, scores the version, its LiteRT files and the
    newest published version on the whole test set (the publishing gate).
    Non-chief workers of a multi-worker run write to a scratch folder and
    discard it: saving distributed variables is a collective step all must join.
    """
    import tensorflow as tf

    if not chief:
        with tempfile.TemporaryDirectory() as scratch:
            write_saved_model(serving, model, Path(scratch) / "model")
        return Exported(None)
    base.mkdir(parents=True, exist_ok=True)
    # Staged beside the model's folder, not in it: TF Serving's base path holds only version numbers.
    staging = base.parent / f".staging-{base.name}-{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="export-check-"))
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
        plan = check_plan(serving, model, config, base, staging, work, test)
        report = check_in_fresh_process(staging, work, inputs, expected, plan, test)
        lines = gate.keep_litert(staging, plan, report) if plan["variants"] else []
        gate.write_evaluation(staging, report)
        held = gate.verdict(report, config, serving.name)
        if held:
            return Exported(None, gate.hold(staging, base, held), (*lines, held))
        return Exported(publish(staging, base), None, tuple(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)
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
    return {k: np.asarray(v).astype(bytes) if np.asarray(v).dtype == object else np.asarray(v) for k,
            v in arrays.items()}


def check_plan(serving: Serving, model, config, base: Path, staging: Path, work: Path, test: TestSet | None) -> dict:
    """What the fresh process is to check (work/check.json), and the LiteRT inputs it needs."""
    scored = bool(serving.metric) and test is not None
    previous = existing_versions(base)
    plan = {"metric": list(serving.metric) if scored else [], "variants": [], "keep": [], "core": None,
            "previous": str(base / str(previous[-1])) if previous and scored else None,
            "precision": precision.compute_dtype(model), "float32": None}
    if scored and config.litert != "none" and serving.litert is not None:
        from deployment import litert, phone_inputs

        # LiteRT's kernels are float32 (its float16 file stores float16 weights and computes in float32):
        # a model trained in float16 or bfloat16 is converted from a float32 copy of its trained weights,
        # and the float32 file is held to that copy's outputs (deployment/precision.py).
        source = precision.float32_copy(model)
        if source is not model:
            plan["float32"] = str(work / "float32")
            write_saved_model(serving, source, work / "float32")
        spec = serving.litert.preprocessing or litert.raw_preprocessing(serving.signature)
        spec = spec(source) if callable(spec) else spec
        litert.write_preprocessing(staging / litert.FOLDER, spec)
        if serving.litert.core is not None:
            plan["core"] = str(work / "core")
            litert.write_core(serving.litert, source, work / "core")
        elif plan["float32"]:
            plan["core"] = plan["float32"]  # the served function itself, in float32
        np.savez(work / "representative.npz", **phone_inputs.prepare(spec, test.representative))
        plan["keep"] = [v for v in serving.litert.variants if config.litert in ("all", v)]
        # float32 is always made: it is what proves preprocessing.json right (deployment/gate.py)
        plan["variants"] = ["float32"] + [v for v in plan["keep"] if v != "float32"]
    (work / "check.json").write_text(json.dumps(plan))
    return plan


def check_in_fresh_process(staging: Path, work: Path, inputs: dict, expected: dict, plan: dict,
                           test: TestSet | None) -> dict:
    """deployment/check.py in a new Python process; its report. A converter
    crash (native code) loses only the variant it was converting: the check reruns without it."""
    np.savez(work / "inputs.npz", **_storable(inputs))
    np.savez(work / "expected.npz", **_storable(expected))
    if test is not None:  # else nothing is scored: the check loads the SavedModel both ways and stops
        np.savez(work / "test.npz", **_storable({**test.inputs, "__targets__": test.targets}))
    skip = []
    while True:
        (work / "report.json").unlink(missing_ok=True)
        result = subprocess.run([sys.executable, "-m", "deployment.check", str(staging), str(work), *skip],
                                capture_output=True, text=True, timeout=1800,
                                cwd=Path(__file__).resolve().parent.parent)
        report = json.loads((work / "report.json").read_text()) if (work / "report.json").exists() else {}
        if result.returncode == 0 and report.get("complete"):
            return report
        skipped = [s.split("=")[0] for s in skip[1::2]]
        crashed = [v for v in plan["variants"] if v not in report.get("litert", {}) and v not in skipped]
        if result.returncode < 0 and "savedmodel" in report and crashed:  # killed by a signal while converting
            skip += ["--skip", f"{crashed[0]}={-result.returncode}"]
            continue
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the exported SavedModel failed verification in a fresh process: {tail}")


def publish_held(held: str) -> str:
    """A version the gate held back, published as the next version (python -m cli.publish HELD)."""
    from core.errors import UsageError

    folder = Path(held)
    if folder.parent.parent.name != gate.HELD or not (folder / "saved_model.pb").exists():
        raise UsageError(f"{held} is not a held-back version (EXPORT_DIR/{gate.HELD}/<model>/<name>/)")
    base = folder.parent.parent.parent / folder.parent.name
    base.mkdir(parents=True, exist_ok=True)
    (folder / "NOT_PUBLISHED.txt").unlink(missing_ok=True)
    return f"published {held} as {publish(folder, base)}"

"""The fresh process that checks a staged export before it is published (training/export.py starts it).

    python -m training.serving_check STAGING WORK [--skip VARIANT ...]

WORK holds what the training process prepared: check.json (the metric, the
LiteRT variants, the newest published version), inputs.npz + expected.npz (a
few real test examples and the in-memory model's outputs for them), test.npz
(the whole test set, raw, with its targets) and representative.npz (prepared
training examples for int8 calibration). In order, it
  1. loads the SavedModel as Python does (tf.saved_model.load) and as TF Serving
     does (training/rest.py: the "serve" MetaGraph in a session, tensors by
     name), and compares both with the in-memory model; the version's
     sample_request.json goes through TF Serving's REST conversion in both the
     row and the columnar format;
  2. scores the SavedModel, and the newest published version, on the test set;
  3. converts each LiteRT variant, runs it one example at a time in the
     LiteRT runtime on the test set (after preprocessing.json's recipe, read
     back from the file), and records its size, score and latency.
Results go to WORK/report.json, written after every step: if the converter
crashes this process, the parent reruns it with --skip for that variant.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from training import litert, phone_inputs, scores
from training.rest import SessionModel, to_feeds

TOLERANCE = 1e-5  # float32 outputs of one model through two loaders
BATCH = 256


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {k: (v.astype(object) if v.dtype.kind == "S" else v) for k, v in data.items()}


def _same(name: str, got, want, tolerance: float, where: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    if want.dtype.kind in "OSU":
        same = got.shape == want.shape and [bytes(x) for x in got.reshape(-1)] == [bytes(x) for x in want.reshape(-1)]
    else:
        same = got.shape == want.shape and np.allclose(got, want, atol=tolerance)
    if not same:
        raise AssertionError(f"{where}: output {name!r} differs from the in-memory model")


def check_loaders(staging: Path, inputs: dict, expected: dict) -> SessionModel:
    """The SavedModel through Python's loader and TF Serving's, against the in-memory model."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(staging)).signatures["serving_default"]
    outputs = {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
    if set(outputs) != set(expected):
        raise AssertionError(f"outputs {sorted(outputs)} != expected {sorted(expected)}")
    for name, want in expected.items():
        _same(name, outputs[name], want, TOLERANCE, "tf.saved_model.load")
    session = SessionModel(staging)
    got = session.run(inputs)
    for name, want in expected.items():
        _same(name, got[name], want, TOLERANCE, "the session loader (TF Serving's path)")
    rows = json.loads((staging / "sample_request.json").read_text())
    columns = {"inputs": {n: [row[n] for row in rows["instances"]] for n in session.signature}}
    for body in (rows, columns):
        feeds, _ = to_feeds(body, session.signature)
        got = session.run(feeds)
        for name, want in expected.items():
            _same(name, got[name], np.asarray(want)[:len(rows["instances"])], TOLERANCE, "sample_request.json")
    return session


def batched(session: SessionModel, raw: dict) -> dict:
    size = len(next(iter(raw.values())))
    parts = [session.run({k: v[i:i + BATCH] for k, v in raw.items()}) for i in range(0, size, BATCH)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def check_litert(staging: Path, work: Path, plan: dict, test: dict, targets, reference: dict, report: dict,
                 skip: list) -> None:
    kind, output = plan["metric"]
    folder = staging / litert.FOLDER
    spec = json.loads((folder / litert.PREPROCESSING).read_text())
    prepared = phone_inputs.prepare(spec, test)
    representative = _load(work / "representative.npz")
    source = Path(plan["core"]) if plan["core"] else staging
    for variant in plan["variants"]:
        entry = report["litert"].setdefault(variant, {})
        if variant in skip:
            entry["error"] = "the converter crashed"
            continue
        print(f"converting {variant}", file=sys.stderr, flush=True)
        started = time.time()
        try:
            content = litert.convert(source, variant, representative if variant == "int8" else None)
        except Exception as err:  # the converter's own refusals (ops it cannot quantise)
            entry["error"] = f"the converter refused: {str(err).strip().splitlines()[-1][:200]}"
            _write(work, report)  # recorded before the next variant can crash the process
            continue
        path = folder / litert.file_name(variant)
        path.write_bytes(content)
        runner = litert.Runner(path)
        outputs, seconds = runner.one_by_one(prepared)
        entry.update(file=path.name, bytes=len(content), convert_seconds=round(time.time() - started, 2),
                     score=scores.score(kind, outputs[output], targets), **litert.latency(seconds),
                     max_difference=float(np.max(np.abs(outputs[output] - reference[output]))))
        _write(work, report)


def _write(work: Path, report: dict) -> None:
    tmp = work / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, work / "report.json")


def main(staging: Path, work: Path, skip: list) -> None:
    plan = json.loads((work / "check.json").read_text())
    report = {"metric": plan["metric"], "litert": {}}
    session = check_loaders(staging, _load(work / "inputs.npz"), _load(work / "expected.npz"))
    report["loaders"] = "tf.saved_model.load and the session loader agree with the in-memory model"
    if not plan["metric"]:  # nothing to score: the loaders' check is all
        report["complete"] = True
        return _write(work, report)
    kind, output = plan["metric"]
    test = _load(work / "test.npz")
    targets = test.pop("__targets__")
    started = time.perf_counter()
    reference = batched(session, test)
    report["savedmodel"] = {"score": scores.score(kind, reference[output], targets), "examples": len(targets),
                            "batch256_seconds": round(time.perf_counter() - started, 3)}
    if plan.get("previous"):
        try:
            previous = batched(SessionModel(plan["previous"]), test)
            report["previous"] = {"path": plan["previous"], "score": scores.score(kind, previous[output], targets)}
        except Exception as err:  # another signature: it cannot be scored on these inputs
            report["previous"] = {"path": plan["previous"], "error": str(err).strip().splitlines()[-1][:300]}
    _write(work, report)
    if plan["variants"]:
        check_litert(staging, work, plan, test, targets, reference, report, skip)
    report["complete"] = True
    _write(work, report)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit("usage: python -m training.serving_check STAGING WORK [--skip VARIANT ...]")
    main(Path(args[0]), Path(args[1]), [a for a in args[2:] if a != "--skip"])
    print("checked", args[0])

"""The fresh process that checks a staged export before it is published (deployment/export.py starts it).

    python -m deployment.check STAGING WORK [--skip VARIANT=SIGNAL ...]

WORK holds what the training process prepared: check.json (the metric, the
LiteRT variants, the newest published version), inputs.npz + expected.npz (a
few real test examples and the in-memory model's outputs for them), test.npz
(the whole test set, raw, with its targets) and representative.npz (prepared
training examples for int8 calibration). In order, it
  1. loads the SavedModel as Python does (tf.saved_model.load) and as TF Serving
     does (deployment/rest.py: the "serve" MetaGraph in a session, tensors by
     name), and compares both with the in-memory model (at the precision it
     computes in: training/precision.py); the version's
     sample_request.json goes through TF Serving's REST conversion in both the
     row and the columnar format;
  2. scores the SavedModel, and the newest published version, on the test set;
  3. converts each LiteRT variant (from a float32 copy of a model trained in
     float16 or bfloat16), runs it one example at a time in the
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

from core import memory
from deployment import litert, phone_inputs, precision, scores
from deployment.rest import SessionModel, to_feeds

BATCH = 256


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {k: (v.astype(object) if v.dtype.kind == "S" else v) for k, v in data.items()}


class Agreement:
    """Compares one evaluation of the model with another at the precision the model computes in
    (training/precision.py: TOLERANCE): float outputs element-wise; discrete outputs (a class, a
    label, a count) exactly, except at examples whose scores (the metric's output) tie at that
    precision, where another rounding may pick the other class. Records the largest difference seen."""

    def __init__(self, dtype: str, scores: str | None):
        self.dtype, self.scores = dtype, scores
        self.max_difference: dict = {}
        self.ties = 0

    def check(self, got: dict, want: dict, where: str) -> None:
        tied = precision.ties(want[self.scores], self.dtype) if self.scores in want else None
        for name, expected in want.items():
            value, expected = np.asarray(got[name]), np.asarray(expected)
            if value.shape != expected.shape:
                raise AssertionError(f"{where}: output {name!r} has shape {value.shape}, "
                                     f"the in-memory model's {expected.shape}")
            if expected.dtype.kind == "f":
                difference = float(np.max(np.abs(value.astype(np.float64) - expected), initial=0.0))
                self.max_difference[name] = max(self.max_difference.get(name, 0.0), difference)
                if not precision.close(value, expected, self.dtype).all():
                    rtol, atol = precision.TOLERANCE[self.dtype]
                    raise AssertionError(f"{where}: output {name!r} differs from the in-memory model by up to "
                                         f"{difference:.3g}, more than a {self.dtype} "
                                         f"model's tolerance ({rtol:g} relative + {atol:g})")
                continue
            same = (np.array([bytes(x) for x in value.reshape(-1)], object) == np.array(
                [bytes(x)
                 for x in expected.reshape(-1)], object)) if expected.dtype.kind in "OSU" else value == expected
            differing = ~np.asarray(same).reshape(len(expected), -1).all(axis=1)
            if differing.any() and (tied is None or not tied[differing].all()):
                raise AssertionError(f"{where}: output {name!r} differs from the in-memory model for "
                                     f"{int(differing.sum())} of {len(expected)} examples")
            self.ties += int(differing.sum())

    def record(self) -> dict:
        rtol, atol = precision.TOLERANCE[self.dtype]
        return {"precision": self.dtype, "tolerance": {"relative": rtol, "absolute": atol},
                "max_difference": self.max_difference, "tied_classes_differing": self.ties}


def check_loaders(staging: Path, inputs: dict, expected: dict, agreement: Agreement) -> SessionModel:
    """The SavedModel through Python's loader and TF Serving's, against the in-memory model."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(staging)).signatures["serving_default"]
    outputs = {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
    if set(outputs) != set(expected):
        raise AssertionError(f"outputs {sorted(outputs)} != expected {sorted(expected)}")
    floats = {k: str(v.dtype) for k, v in outputs.items() if v.dtype.kind == "f" and v.dtype != np.float32}
    if floats:
        raise AssertionError(f"serving_default's float outputs must be float32, got {floats}")
    agreement.check(outputs, expected, "tf.saved_model.load")
    session = SessionModel(staging)
    agreement.check(session.run(inputs), expected, "the session loader (TF Serving's path)")
    rows = json.loads((staging / "sample_request.json").read_text())
    columns = {"inputs": {n: [row[n] for row in rows["instances"]] for n in session.signature}}
    first = {name: np.asarray(want)[:len(rows["instances"])] for name, want in expected.items()}
    for body in (rows, columns):
        feeds, _ = to_feeds(body, session.signature)
        agreement.check(session.run(feeds), first, "sample_request.json")
    return session


def batched(session: SessionModel, raw: dict) -> dict:
    size = len(next(iter(raw.values())))
    parts = [session.run({k: v[i:i + BATCH] for k, v in raw.items()}) for i in range(0, size, BATCH)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def check_litert(staging: Path, work: Path, plan: dict, test: dict, targets, reference: dict, report: dict,
                 skip: dict) -> None:
    """Converts, runs and scores each LiteRT variant. `reference`: the outputs the float32 file must
    reproduce (the SavedModel's, or its float32 copy's for a model trained in float16 or bfloat16)."""
    kind, output = plan["metric"]
    folder = staging / litert.FOLDER
    spec = json.loads((folder / litert.PREPROCESSING).read_text())
    prepared = phone_inputs.prepare(spec, test)
    representative = _load(work / "representative.npz")
    source = Path(plan["core"]) if plan["core"] else staging
    for variant in plan["variants"]:
        entry = report["litert"].setdefault(variant, {})
        if variant in skip:
            entry["error"] = litert.crash(skip[variant])
            continue
        print(f"converting {variant}", file=sys.stderr, flush=True)
        started = time.time()
        try:
            content = litert.convert(source, variant, representative if variant == "int8" else None)
        except Exception as err:  # the converter's own refusals (ops it has no kernel for, or cannot quantise)
            entry["error"], entry["converter_message"] = litert.refusal(err), str(err)[:20000]
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


def main(staging: Path, work: Path, skip: dict) -> None:
    memory.keep_large_blocks_apart()  # large freed blocks go back to the system (core/memory.py)
    plan = json.loads((work / "check.json").read_text())
    report = {"metric": plan["metric"], "litert": {}}
    agreement = Agreement(plan["precision"], plan["metric"][1] if plan["metric"] else None)
    session = check_loaders(staging, _load(work / "inputs.npz"), _load(work / "expected.npz"), agreement)
    report["loaders"] = {"agree": "tf.saved_model.load, the session loader and sample_request.json (rows and columns) "
                                  "with the in-memory model", **agreement.record()}
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
        if plan.get("float32"):  # trained in float16 or bfloat16: LiteRT files come from a float32 copy
            copy = batched(SessionModel(plan["float32"]), test)
            report["float32_copy"] = {
                "score": scores.score(kind, copy[output], targets),
                "max_difference": float(np.max(np.abs(copy[output] - reference[output]))),
                "note": "the trained weights in a float32 copy of the architecture, which the LiteRT files are "
                        "converted from; max_difference: against the SavedModel, which computes in "
                        + plan["precision"]}
            reference = copy
        check_litert(staging, work, plan, test, targets, reference, report, skip)
    report["complete"] = True
    _write(work, report)


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit("usage: python -m deployment.check STAGING WORK [--skip VARIANT=SIGNAL ...]")
    skipped = [a for a in args[2:] if a != "--skip"]  # VARIANT=SIGNAL: the converter crashed on it
    main(Path(args[0]), Path(args[1]), dict(a.split("=") for a in skipped))
    print("checked", args[0])

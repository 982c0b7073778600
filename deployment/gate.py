"""What is published: LiteRT files within tolerance, and the publishing gate.

Both decisions use the report of the fresh process that checked the staged
version (deployment/check.py) and the metric's one tolerance
(deployment/scores.py).

LiteRT: the float32 file must reproduce the SavedModel on the whole test set
(raw inputs through preprocessing.json's recipe), else the recipe is wrong and
no LiteRT file is kept. For a model trained in float16 or bfloat16 the files
are converted from its float32 copy (training/precision.py), which the float32
file must reproduce instead; every file's score is still judged against the
SavedModel's. A compressed file that loses more than the tolerance
is not kept; one line says so and by how much.

The gate (what TFX's Evaluator calls blessing): a new version is scored on the
same test set as the newest published version of the same model, in the same
process. If it is worse by more than the tolerance it is not published but
held back in EXPORT_DIR/held/<model>/<time>-<run>/, outside TF Serving's base
path, and the run says by how much and how to publish anyway
(--publish always). A first version and --publish always skip the comparison.
Nothing already published is touched either way.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from deployment import scores
from deployment.litert import FOLDER, file_name

EVALUATION = "evaluation.json"
FLOAT_TOLERANCE = 1e-4  # float32 LiteRT against the SavedModel: kernels sum in another order, nothing more
HELD = "held"


def keep_litert(staging: Path, plan: dict, report: dict) -> list[str]:
    """Delete the LiteRT files that must not ship; lines saying which and why."""
    kind, _ = plan["metric"]
    reference = report["savedmodel"]["score"]
    entries, lines = report["litert"], []
    folder = staging / FOLDER
    exact = entries.get("float32", {})
    if "float32" in entries and exact.get("max_difference", 1.0) > FLOAT_TOLERANCE:
        shutil.rmtree(folder, ignore_errors=True)
        for entry in entries.values():
            entry["kept"] = False
        if "error" in exact:
            return [f"LiteRT: no files written: the float32 file could not be made: {exact['error']}; the SavedModel "
                    f"is published without them (its {EVALUATION} holds the "
                    "converter's whole message; --litert none skips LiteRT files)"]
        model = "the SavedModel's float32 copy" if "float32_copy" in report else "the SavedModel"
        return [f"LiteRT: no files written: the float32 file does not reproduce {model} (outputs differ by up to "
                f"{exact['max_difference']:.3g}): preprocessing.json "
                "is wrong for this model; please report this as a bug"]
    for variant, entry in entries.items():
        if "error" in entry:
            entry["kept"] = False
            lines.append(f"LiteRT {variant}: not written: {entry['error']}; the other files are checked as usual "
                         "(--litert VARIANT or none chooses which are made)")
        elif not scores.within(kind, reference, entry["score"]):
            entry["kept"] = False
            (folder / file_name(variant)).unlink(missing_ok=True)
            lines.append(f"LiteRT {variant}: not written: it loses {scores.describe(kind, reference, entry['score'])} "
                         f"on the test set, more than the tolerance of {scores.tolerance_text(kind)}")
        else:
            entry["kept"] = True
        if entry["kept"] and variant not in plan["keep"]:  # made for the float32 check only (--litert VARIANT)
            entry["kept"] = False
            (folder / file_name(variant)).unlink(missing_ok=True)
    return lines


def write_evaluation(staging: Path, report: dict) -> None:
    """The version's test scores and LiteRT measurements, beside it (TF Serving ignores the file)."""
    record = {k: v for k, v in report.items() if k in ("metric", "loaders", "savedmodel", "float32_copy", "previous",
                                                        "litert")}
    (staging / EVALUATION).write_text(json.dumps(record, indent=2))


def verdict(report: dict, config, name: str) -> str:
    """'' to publish, else the one line saying why this version is held back."""
    previous = report.get("previous")
    if config.publish == "always" or not previous:
        return ""
    version = Path(previous["path"]).name
    if "error" in previous:
        return (f"not published: version {version} of {name} cannot be scored on this test set ({previous['error']}), "
                "so this version cannot be compared with it; rerun with --publish always to publish it anyway")
    kind = report["metric"][0]
    new, old = report["savedmodel"]["score"], previous["score"]
    if scores.within(kind, old, new):
        return ""
    return (f"not published: it loses {scores.describe(kind, old, new)} to version {version} of {name} on the same "
            f"test set, more than the tolerance of {scores.tolerance_text(kind)}; "
            "rerun with --publish always to publish it anyway")


def hold(staging: Path, base: Path, reason: str) -> Path:
    """Move the checked version aside, outside the base path TF Serving watches."""
    held = base.parent / HELD / base.name / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    held.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staging, held)
    (held / "NOT_PUBLISHED.txt").write_text(reason + "\n")
    return held

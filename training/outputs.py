"""Where a run writes: its run folder (found again on resume), and the closing report.

A run folder is LOGDIR/<app>/<model>-<config hash>-<n>. Rerunning the same
command finds the newest folder with the same model and hash; if that run never
finished (no FINISHED file) it is resumed from its backup, otherwise run n+1
starts. The name is derived from the command, not the clock, so every worker of
a multi-worker run arrives at the same folder without talking to the others.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from training.config import NOT_MODEL_DEFINING, differences
from errors import UsageError

FINISHED = "FINISHED.json"


def check_writable(folder: Path, flag: str) -> None:
    """Fail in the first second, not after training, when an output folder can't be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UsageError(f"{flag} {folder} is not writable ({err.strerror}); choose another folder") from None


def resolve_run_dir(config) -> Path:
    """The run folder for this config: an unfinished one to resume, or a new one."""
    base = Path(config.logdir) / config.app
    check_writable(base, "--logdir")
    if config.run_id:
        run_dir = base / config.run_id
        if (run_dir / FINISHED).exists():
            raise UsageError(f"run {run_dir} already finished; pick another --run-id (nothing was changed)")
        if config.fresh and run_dir.exists():
            raise UsageError(f"--fresh with --run-id {config.run_id}: that folder exists; pick a new --run-id")
        check_same_run(run_dir, config)
        return run_dir
    prefix = f"{config.model}-{config.identity()}"
    pattern = re.compile(re.escape(prefix) + r"-(\d+)$")
    numbers = sorted(int(m.group(1)) for p in base.iterdir() if (m := pattern.match(p.name)))
    if numbers and not config.fresh and not (base / f"{prefix}-{numbers[-1]}" / FINISHED).exists():
        return base / f"{prefix}-{numbers[-1]}"
    return base / f"{prefix}-{(numbers[-1] if numbers else 0) + 1}"


def check_same_run(run_dir: Path, config) -> None:
    """A --run-id folder is resumed only by the command that started it: other
    model-defining flags would load its backups into another configuration."""
    saved = run_dir / "run_config.json"
    if not saved.exists():
        return
    try:
        old = {k: v for k, v in json.loads(saved.read_text()).items() if k not in NOT_MODEL_DEFINING}
    except (OSError, ValueError) as err:
        raise UsageError(f"--run-id {config.run_id}: cannot read {saved} ({err}); pick another --run-id") from None
    if old != config.record():
        raise UsageError(f"--run-id {config.run_id} was started with other settings ({differences(old, config.record())}); "
                         "rerun it with its own flags to resume it, or pick another --run-id")


def mark_finished(run_dir: Path, results: dict) -> None:
    tmp = run_dir / f".{FINISHED}.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str))
    os.replace(tmp, run_dir / FINISHED)


def weights_digest(model) -> str:
    """sha256 of the model's weights, in order: equal for bit-identical models
    (--deterministic promises it for reruns of one command, resumed or not)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def report(serving, config, run_dir: Path, results: dict, exported, details: dict | None = None,
           weights: str = "") -> str:
    """The closing lines: the result, where everything went, and how to look at it."""
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in results.items() if k.startswith("test_"))
    lines = ["", f"Test set:     {metrics}"]
    lines += [f"{k + ':':<13} {v:.4f}" if isinstance(v, float) else f"{k + ':':<13} {v}"
              for k, v in (details or {}).items()]  # the app's own findings
    if weights:
        lines.append(f"Weights:      sha256 {weights[:16]}" + ("  (--deterministic: the same for every rerun of this command, "
                                                               "resumed or not)" if config.deterministic else ""))
    lines += [
        f"Logs:         {run_dir}",
        f"Checkpoint:   {run_dir / 'model.keras'}  (resume backups in {run_dir / 'backup'} are removed once a run finishes)",
        f"TensorBoard:  tensorboard --logdir {Path(config.logdir) / config.app}",
    ]
    export_path = exported.path
    lines += exported.lines[:-1] if exported.held else exported.lines  # LiteRT files left out (the gate's verdict ends the run)
    if exported.held is not None:
        lines += [f"Held back:    {exported.held}  (not published; publish it as the next version with: "
                  f"python -m training.export publish {exported.held})"]
    if export_path is not None:
        name, base = serving.name, export_path.parent.resolve()
        signature = ", ".join(f"{k} {s.dtype.name}{list(s.shape)}" for k, s in serving.signature.items())
        lines += [
            f"Export:       {export_path}  (serving_default: {signature} -> {', '.join(serving.outputs)})",
            f"Inspect:      saved_model_cli show --dir {export_path} --all",
            f"Serve:        docker run --rm -p 8501:8501 -v {base}:/models/{name} -e MODEL_NAME={name} tensorflow/serving",
            f"Request:      curl -s -X POST -d @{export_path / 'sample_request.json'} http://localhost:8501/v1/models/{name}:predict",
            f"  or locally, as TF Serving loads it: python -m training.rest {export_path} {export_path / 'sample_request.json'}",
        ]
        lines += litert_lines(export_path)
    return "\n".join(lines)


def litert_lines(version: Path) -> list[str]:
    """Where the LiteRT files went, with their sizes, test scores and batch-1 latency (evaluation.json)."""
    path = version / "evaluation.json"
    if not path.exists():
        return []
    evaluation = json.loads(path.read_text())
    kind = evaluation["metric"][0]
    kept = {v: e for v, e in evaluation.get("litert", {}).items() if e.get("kept")}
    if not kept:
        return []
    lines = [f"LiteRT:       {version / 'litert'}  (test {kind}: SavedModel {evaluation['savedmodel']['score']:.4f}; "
             "phone preprocessing: preprocessing.json)"]
    lines += [f"  {entry['file']:<27} {entry['bytes'] / 1024:8.0f} KB  {kind} {entry['score']:.4f}  "
              f"batch-1 p50 {entry['p50_ms']:.3f} ms  p99 {entry['p99_ms']:.3f} ms" for entry in kept.values()]
    return lines


"""Where a run writes: its run folder, found again by the same command, and the record of a finished run.

A run folder is LOGDIR/<app>/<model>-<config hash>-<n>. Rerunning the same
command finds the newest folder with the same model and hash: a run that never
finished (no FINISHED.json) is resumed from its backup; a finished one is not
trained again (AlreadyFinished says where its export went); --fresh starts run
n+1 beside it. The name is derived from the command, not the clock, so every
worker of a multi-worker run arrives at the same folder without talking to the
others.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from core.config import NOT_MODEL_DEFINING, differences
from core.errors import UsageError

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
    """The run folder for this config: this command's newest (to resume, or found finished), or a new one."""
    base = Path(config.logdir) / config.app
    check_writable(base, "--logdir")
    if config.run_id:
        run_dir = base / config.run_id
        if config.fresh and run_dir.exists():
            raise UsageError(f"--fresh with --run-id {config.run_id}: that folder exists; pick a new --run-id")
        check_same_run(run_dir, config)
        return run_dir
    prefix = f"{config.model}-{config.identity()}"
    pattern = re.compile(re.escape(prefix) + r"-(\d+)$")
    numbers = sorted(int(m.group(1)) for p in base.iterdir() if (m := pattern.match(p.name)))
    if numbers and not config.fresh:  # this command's newest run: resumed, or found finished
        return base / f"{prefix}-{numbers[-1]}"
    return base / f"{prefix}-{(numbers[-1] if numbers else 0) + 1}"


class AlreadyFinished(Exception):
    """The same command's run already ran to the end: nothing to train (the command exits 0, cli/main.py)."""

    def __init__(self, run_dir: Path):
        record = json.loads((run_dir / FINISHED).read_text())
        scores = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("test_") and isinstance(v, float))
        where = (f"its export: {record['export']}" if record.get("export") else
                 f"its version was held back by the publishing gate: {record['held']}" if record.get("held") else
                 "it exported nothing")
        super().__init__(f"this command already ran to the end in {run_dir} ({scores}); {where}. Nothing was trained; "
                         "rerun with --fresh to train a new run beside it")


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
        raise UsageError(f"--run-id {config.run_id} was started with other settings "
                         f"({differences(old, config.record())}); rerun it with "
                         "its own flags to resume it, or pick another --run-id")


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

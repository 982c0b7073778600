"""What resume safety costs on the default MNIST model: backups and --deterministic, side by side in one run.

    python -m benchmarks.resume                      # 4 rounds of 3 settings, 2 epochs each: ~15 min on 2 CPU cores
    python -m benchmarks.resume --rounds 1 --epochs 1

Every setting is the real command, `python -m apps.mnist --epochs N` on real
MNIST (the offline mirror), each run in a process of its own, and the settings
take turns going first, round by round, so this host's drift (up to 2x) hits them alike:
  backups every 200 steps  the default (--backup-every 200), plus one at every epoch end
  backups at epoch ends    --backup-every 1000000000: only the epoch-end ones
  --deterministic          TensorFlow's op determinism, default backups
Reported per setting (median over rounds): training steps/s and training time
(the epochs: steps, validation, every callback; not start-up, test or export),
and the time the backup callback spent writing backups (variables to NumPy,
files, fsync) as a share of training time, measured inside the callback. The
bit-identical weights of --deterministic rounds are checked on the way.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "backups every 200 steps (default)": [],
    "backups at epoch ends only": ["--backup-every", "1000000000"],
    "--deterministic": ["--deterministic"],
}


def one_run(flags: list[str], epochs: int, scratch: Path) -> dict:
    logdir = Path(tempfile.mkdtemp(dir=scratch))
    command = [sys.executable, "-m", "apps.mnist", "--epochs", str(epochs), "--data-source", "mirror",
               "--logdir", str(logdir), "--export-dir", str(scratch / "export"), *flags]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    finished = json.loads(next(logdir.glob("mnist/*/FINISHED.json")).read_text())
    steps = sum(1 for _ in next(logdir.glob("mnist/*/steps.jsonl")).open())
    return {"steps": steps, **finished}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as scratch:
        names = list(SETTINGS)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:  # each goes first in turn
                r = one_run(SETTINGS[name], args.epochs, Path(scratch))
                results[name].append(r)
                print(f"round {round_ + 1} {name}: {r['steps'] / r['training_seconds']:.2f} steps/s, "
                      f"{r['backups_written']} backups in {r['backup_seconds']:.2f} s, test accuracy "
                      f"{r['test_accuracy']:.4f}, weights {r['weights_sha256'][:12]}", flush=True)
    deterministic = {r["weights_sha256"] for r in results["--deterministic"]}
    print(f"\n--deterministic rounds gave {len(deterministic)} distinct weight hash(es) over {args.rounds} run(s)")
    print("\n| setting | steps/s, median (range) | training s, median | backups a run (writing them) | "
          "writing backups, share of training |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        rates = [r["steps"] / r["training_seconds"] for r in rows]
        seconds = statistics.median(r["training_seconds"] for r in rows)
        share = statistics.median(100 * r["backup_seconds"] / r["training_seconds"] for r in rows)
        print(f"| {name} | {statistics.median(rates):.2f} ({min(rates):.2f} to {max(rates):.2f}) | {seconds:.1f} | "
              f"{rows[0]['backups_written']} ({statistics.median(r['backup_seconds'] for r in rows):.2f} s) | {share:.2f} % |")
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s; {os.cpu_count()} CPU cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

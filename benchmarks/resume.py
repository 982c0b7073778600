"""What resume safety costs on the default MNIST model: backups and --deterministic, side by side in one run.

    python -m benchmarks.resume                      # 4 rounds of 3 settings, 2 epochs each: ~15 min on 2 CPU cores
    python -m benchmarks.resume --rounds 1 --epochs 1

Every setting is the real command, `python -m apps.mnist --epochs N` on real
MNIST (the offline mirror), each run in a process of its own, and the settings
take turns going first, round by round, so a host's drift (up to 2x) hits them alike:
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
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import harness

SETTINGS = {
    "backups every 200 steps (default)": [],
    "backups at epoch ends only (`--backup-every 1000000000`)": ["--backup-every", "1000000000"],
    "`--deterministic` (default backups)": ["--deterministic"],
}


def one_run(flags: list[str], epochs: int, scratch: Path) -> dict:
    """One run of the default model as a user runs it (benchmarks/harness.py, in a process of its own)."""
    result = harness.run_app("mnist", ["--epochs", str(epochs), *flags], scratch, quiet=False, process=True)
    return {"steps": len(result.steps()), **result.finished}


def summary(name: str, rows: list[dict]) -> dict:
    rates = [r["steps"] / r["training_seconds"] for r in rows]
    return {"setting": name, "rate_median": statistics.median(rates), "rate_min": min(rates), "rate_max": max(rates),
            "training_seconds": statistics.median(r["training_seconds"] for r in rows),
            "backups": rows[0]["backups_written"], "backup_seconds": statistics.median(r["backup_seconds"]
                                                                                       for r in rows),
            "share_percent": statistics.median(100 * r["backup_seconds"] / r["training_seconds"] for r in rows),
            "weights": sorted({r["weights_sha256"][:12] for r in rows}),
            "test_accuracy": [r["test_accuracy"] for r in rows]}


def markdown(record: dict) -> str:
    """The table of a --json record (python -m benchmarks.results)."""
    lines = ["| setting | steps/s, median (range) | training s, median | "
             "backups a run (writing them) | writing backups, share of training |", "|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['rate_median']:.2f} ({r['rate_min']:.2f} to {r['rate_max']:.2f}) | "
              f"{r['training_seconds']:.1f} | {r['backups']} "
              f"({r['backup_seconds']:.2f} s) | {r['share_percent']:.2f} % |"
              for r in record["rows"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", metavar="DIR", help="also write the rows as DIR/resume.json "
                                                      "(python -m benchmarks.results)")
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
    rows = [summary(name, runs) for name, runs in results.items()]
    hashes = len(rows[-1]["weights"])
    print(f"\n--deterministic rounds gave {hashes} distinct weight hash(es) over {args.rounds} run(s)")
    print("\n" + markdown({"rows": rows}))
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s; {os.cpu_count()} CPU cores")
    harness.write_json(args.json, "resume", harness.command("benchmarks.resume", argv), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

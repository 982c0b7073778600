"""The one way a benchmark runs an app: into a scratch folder, with the benchmark flags, and back come its figures.

    result = harness.run_app(apps.mnist, ["--epochs", "3"], scratch)           # in this process
    result = harness.run_app("mnist", ["--mixed-precision", "float16"], scratch, process=True)   # as a user runs it
    result.results["test_accuracy"], result.training_seconds, result.step_seconds(), result.evaluation

Every run gets BENCH_FLAGS: the offline mirror (the figures are of known data), a
fresh run folder, and --publish always, since rows of one benchmark export into
one scratch folder and a row that scores under the one before it is a figure to
print, not a version for the publishing gate to hold back. QUIET leaves out the
LiteRT files and TensorBoard pictures where a benchmark does not measure them.

write_json(DIR, name, ...) saves a benchmark's rows for `python -m benchmarks.results`;
scale_rows(...) is the one way a benchmark measures a user's large file (--scale-gb).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
BENCH_FLAGS = ["--data-source", "mirror", "--fresh", "--publish", "always"]
QUIET = ["--litert", "none", "--pictures", "none"]


class Result(NamedTuple):
    """One run of an app: its test results, folders and timings."""

    results: dict  # the test metrics and the app's own figures (what run() returns; from FINISHED.json in a process)
    run_dir: Path
    finished: dict  # the run folder's FINISHED.json: training_seconds, weights_sha256, export, ...
    seconds: float  # wall time of the whole run, data and export included
    stdout: str = ""
    peak_rss_mb: float | None = None  # process=True: the run's own process's peak RSS (Measured)

    @property
    def training_seconds(self) -> float:
        return self.finished["training_seconds"]

    @property
    def export(self) -> Path | None:
        return Path(self.finished["export"]) if self.finished.get("export") else None

    @property
    def evaluation(self) -> dict:
        """The export's evaluation.json (test scores, loaders, LiteRT files), or {}."""
        path = self.export / "evaluation.json" if self.export else None
        return json.loads(path.read_text()) if path and path.exists() else {}

    def steps(self) -> list[dict]:
        return [json.loads(line) for line in (self.run_dir / "steps.jsonl").read_text().splitlines()]

    def step_seconds(self, skip: int = 10) -> float:
        """The median time of one training step, past each epoch's first `skip` steps (tracing, warm-up) and
        never across an epoch's end (validation, pictures and backups happen there)."""
        rows = self.steps()
        times = [b["time"] - a["time"] for a, b in zip(rows, rows[1:]) if b["epoch"] == a["epoch"] and b["step"] > skip]
        return statistics.median(times) if times else float("nan")


def run_app(app, argv: list[str], scratch: str | Path, quiet: bool = True, process: bool = False,
            fresh: bool = True, log: Path | None = None, timeout: float = 4 * 3600) -> Result:
    """Train the app (a module, or its name) as `argv` says into SCRATCH/runs and SCRATCH/export.

    process=True runs `python -m apps.<app>` in a new process, as a user would (a fresh TensorFlow:
    what a strategy or policy does to one process cannot leak into the next row); a run that fails
    raises RuntimeError with its last lines. fresh=False resumes (or finds finished) a run of the same
    command or --run-id instead of starting one beside it. log: the run's own output goes there.
    """
    from cli.parser import parse_config
    from training.run_folder import FINISHED, resolve_run_dir

    module = importlib.import_module(f"apps.{app}") if isinstance(app, str) else app
    flags = [f for f in BENCH_FLAGS if fresh or f != "--fresh"]
    argv = [*argv, *flags, *(QUIET if quiet else []), "--logdir", f"{scratch}/runs", "--export-dir",
            f"{scratch}/export"]
    run_dir = resolve_run_dir(parse_config(module, argv))  # the folder run() will pick
    start = time.perf_counter()
    stdout, peak_mb = "", None
    with open(log, "a") if log else contextlib.nullcontext() as out:
        if process:
            done = _measured(f"apps.{module.NAME}", argv, stderr=out or subprocess.PIPE, timeout=timeout)
            stdout, peak_mb = done.stdout, done.peak_rss_mb
            if out:
                out.write(stdout)
            if done.returncode != 0:
                tail = "\n".join((done.stdout + (done.stderr or "")).strip().splitlines()[-6:])
                raise RuntimeError(f"apps.{module.NAME} {' '.join(argv)} exited {done.returncode}:\n{tail}")
        else:
            from training.run import run
            from training.run_folder import AlreadyFinished

            with contextlib.redirect_stdout(out) if out else contextlib.nullcontext():
                if out:
                    print(f"\n==== {module.NAME} {' '.join(argv)}", flush=True)
                try:
                    run(module, parse_config(module, argv))
                except AlreadyFinished as done:  # fresh=False: the same command's finished run, reused
                    print(done, flush=True)
    seconds = time.perf_counter() - start
    finished = json.loads((run_dir / FINISHED).read_text())
    results = {k: v for k, v in finished.items() if k.startswith("test_")}
    results.update({k: v for k, v in finished.get("details", {}).items() if isinstance(v, (int, float))})
    return Result(results, run_dir, finished, seconds, stdout, peak_mb)


MEASURED = """import resource, runpy, sys
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
code = 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as done:
    code = done.code
print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


class Measured(NamedTuple):
    """`python -m MODULE ARGV` run in a fresh process (run_measured)."""

    stdout: str  # the run's own output
    returncode: int
    stderr: str | None
    seconds: float  # wall time
    peak_rss_mb: float | None  # the run's process alone: its high-water mark of resident pages (getrusage)
    peak_memory_mb: float | None  # the run and the processes it started at once: summed PSS (benchmarks/memory.py)


def _measured(module: str, argv: list[str], stderr=subprocess.PIPE, timeout: float | None = None) -> Measured:
    from benchmarks.memory import TreeMemory

    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", MEASURED, module, *argv], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=stderr)
    with TreeMemory(process.pid) as memory:
        try:
            stdout, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    lines = stdout.splitlines(keepends=True)
    found = [x for x in lines if x.startswith("peak_rss_kb ")]
    peak = int(found[-1].split()[1]) / 1024 if found else None
    stdout = "".join(x for x in lines if not found or x is not found[-1])
    return Measured(stdout, process.returncode, err, time.perf_counter() - start, peak, memory.peak_mb)


def run_measured(module: str, argv: list[str]) -> Measured:
    """`python -m MODULE ARGV` in a fresh process, its memory measured both ways (Measured); a run that fails
    raises RuntimeError with the end of its output."""
    done = _measured(module, argv)
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + (done.stderr or "")[-2000:])
    return done


def command(module: str, argv: list[str] | None) -> str:
    """The benchmark's command line as it was typed, without --json DIR (what its JSON records)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--json" in args:
        del args[args.index("--json"):args.index("--json") + 2]
    return " ".join(["python -m", module, *[a for a in args if not a.startswith("--json=")]])


def write_json(directory: str | None, name: str, command: str, rows, notes=(), **extra) -> Path | None:
    """A benchmark's rows as DIR/<name>.json (--json DIR), with the command, date, host CPU and commit:
    what docs/results.md's tables are made from (python -m benchmarks.results)."""
    if not directory:
        return None
    import os
    import platform

    import tensorflow as tf

    record = {"benchmark": name, "command": command, "date": time.strftime("%Y-%m-%d"), "host_cpu": host_cpu(),
              "cores": os.cpu_count(), "commit": commit(), "tensorflow": tf.__version__,
              "python": platform.python_version(), **extra, "rows": rows, "notes": list(notes)}
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"rows written to {path}", flush=True)
    return path


def scale_rows(gigabytes: float, scratch: Path, stem: str, make, row, unit: str) -> list:
    """--scale-gb G: a file of G/10 GB and one of G GB, each made by make(path, gigabytes) -> how many
    rows it holds, measured by row(path) -> a dict, printed, and deleted (each may be large)."""
    rows = []
    for size in (gigabytes / 10, gigabytes):
        path = scratch / f"{stem}-{size:g}gb.csv"
        made = make(path, size)
        print(f"{path}: {made:,} {unit}, {path.stat().st_size / 1e9:.2f} GB", flush=True)
        rows.append(row(path))
        print(rows[-1], flush=True)
        path.unlink()
    return rows


def host_cpu() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it ('AMD EPYC', 'Intel Xeon ...')."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def commit() -> str:
    """The checked-out commit (with '+changes' when the tree differs from it)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def megabytes(value: float | None) -> str:
    """A memory figure for a table: '1,234 MB', or 'not measured' (rows measured before it was)."""
    return "not measured" if value is None else f"{value:,.0f} MB"

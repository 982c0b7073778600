"""Trials in child processes: --workers N processes against one chief, with Keras Tuner's own oracle service.

Why child processes, even for one worker: TensorFlow and Keras do not give
back the memory of a trained model. clear_session() and gc.collect() between
models still left a bare build-and-fit loop growing from 764 to 1,273 MB over
12 models (Keras 3.15.1, TF 2.21), and a search in one process grew the same
way (756 to 1,345 MB over 30 regression trials). A process that exits returns
everything. So by default one worker trains the trials and is replaced after
--trials-per-worker of them (1: every trial gets a fresh process).

A process that dies in a trial (the kernel's out-of-memory killer, a crash in
native code) costs only that trial: the chief records it FAILED with the
cause and starts a new worker, and the search goes on.

Keras Tuner reads three environment variables: KERASTUNER_TUNER_ID ("chief" for
the process that holds the oracle, any other name for a worker),
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (where the chief's gRPC oracle
listens). The chief hands out trials and records results; the workers train.

On one machine `--workers N` does it all: this process becomes the chief on
127.0.0.1 and starts N workers with the same command line. Across machines,
set the variables yourself and give every process the same --search-id and a
--logdir they all can write (a shared file system), e.g.

    # machine A (chief; 10.0.0.1), with --workers N local workers of its own (default 1):
    KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=0.0.0.0 KERASTUNER_ORACLE_PORT=8000 \\
        python -m tuning mnist --search-id big --logdir /shared/runs
    # machines B, C, ... (workers; each its own id):
    KERASTUNER_TUNER_ID=tuner-b KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 \\
        python -m tuning mnist --search-id big --logdir /shared/runs

The chief ends (table, best hyperparameters, final fit) only when the other
machines' workers have ended their trials too. Keras Tuner has no heartbeat: a
worker machine that dies mid-trial keeps the chief waiting (it says so every
30 s); stop it and rerun the chief's command to resume. On 127.0.0.1 this is
tests/test_tuning.py's worker-started-by-hand test.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras_tuner

from core.errors import UsageError
from cli.main import USAGE_EXIT
from tuning.report import DEADLINE_ENV

LOOPBACK = "127.0.0.1"
RECYCLE_EXIT = 75  # a worker that ran its --trials-per-worker and wants a successor (EX_TEMPFAIL)
TRIALS_ENV = "TFSUITE_TRIALS_PER_WORKER"
CHIEF_PID_ENV = "TFSUITE_CHIEF_PID"


def is_worker() -> bool:
    """A process that trains trials for a chief elsewhere (Keras Tuner's rule)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"


class Recycle(Exception):
    """Raised in a worker between trials once it has run its share."""


def recycle_after(tuner) -> None:
    """In a local worker: leave (exit RECYCLE_EXIT) before asking for trial K+1; the chief starts a successor."""
    limit = int(os.environ.get(TRIALS_ENV, "0"))
    if not limit:
        return  # a worker started by hand on another machine runs until the search ends
    done, on_trial_end, pre_create = [0], tuner.on_trial_end, tuner.pre_create_trial

    def counted_end(trial):
        on_trial_end(trial)
        done[0] += 1

    def maybe_leave():
        if done[0] >= limit:
            raise Recycle()
        pre_create()

    tuner.on_trial_end, tuner.pre_create_trial = counted_end, maybe_leave


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def worker_argv(argv: list[str], search_id: str) -> list[str]:
    """The chief's command line for a worker: no --workers, no --fresh, the chief's search folder."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--search-id", "--trials-per-worker"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--search-id=", "--trials-per-worker=")) or arg == "--fresh":
            continue
        out.append(arg)
    return out + ["--search-id", search_id]


def die_with_chief() -> None:
    """In a local worker: a worker must not outlive a chief killed with SIGKILL
    (it would train on, unseen). Set here, not in Popen's preexec_fn: forking a
    process whose gRPC threads run and then running Python in the child made
    workers abort now and then."""
    chief = int(os.environ.get(CHIEF_PID_ENV, "0"))
    if not chief:
        return
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != chief:  # the chief died before the line above took effect
        os._exit(1)


def leave(code: int) -> None:
    """A worker's exit. Skips the interpreter's teardown, where gRPC's and
    TensorFlow's threads sometimes aborted the process (SIGABRT) after its work
    was done and reported."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _pump(stream, log: Path, prefix: str) -> None:
    """A worker's output into its log and onto this console (its epochs are the search's progress)."""
    with open(log, "ab") as out:
        for line in iter(stream.readline, b""):
            out.write(line)
            out.flush()
            # TensorFlow's C++ start-up lines stay in the log; so does a worker's bad-input line, which the chief
            # repeats.
            if not line.startswith((b"I0000", b"W0000", b"E0000", b"WARNING: All log", b"error: ")):
                sys.stdout.write(prefix + line.decode(errors="replace"))
                sys.stdout.flush()


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(empty log)"


def _cause(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        return f"its process was killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    return f"its process exited with status {code}"


def oracle_address() -> tuple[str, str]:
    """Where the chief's oracle will listen: 127.0.0.1 at a free port, or where
    KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT say (a search across machines).

    Checked by binding it here first: Keras Tuner's server fails to bind
    inside a thread of its own and workers would wait for it forever, so a
    taken port or a malformed address must be one line before anything starts."""
    host = os.environ.get("KERASTUNER_ORACLE_IP", LOOPBACK)
    port = os.environ.get("KERASTUNER_ORACLE_PORT") or str(free_port())
    where = f"KERASTUNER_ORACLE_IP={host} KERASTUNER_ORACLE_PORT={port}"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{where}: the port must be a number from 1 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except (socket.gaierror, UnicodeError) as err:
        raise UsageError(f"{where}: {host!r} is not an address of this machine ({err})") from None
    except OSError as err:
        raise UsageError(f"{where}: cannot listen there ({err.strerror}); choose another port or address") from None
    return host, port


def _serve_until_listening(tuner, search_kwargs: dict, bind: str, port: str) -> threading.Thread:
    """Keras Tuner's chief search in a thread, once its oracle accepts connections."""
    failure = []

    def serve():
        try:
            tuner.search(**search_kwargs)  # serves the oracle until the workers have been told to stop
        except Exception as err:  # reported below, in this process's own words
            failure.append(err)

    chief = threading.Thread(target=serve, daemon=True)
    chief.start()
    host, deadline = (LOOPBACK if bind in ("0.0.0.0", "::", "[::]") else bind.strip("[]")), time.time() + 120
    while True:
        if not chief.is_alive() and failure:
            raise UsageError(f"the oracle could not start on {bind}:{port} ({failure[0]})")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return chief
        except OSError:
            if time.time() > deadline:
                raise UsageError(f"the oracle did not start listening on {bind}:{port} within 120 s") from None
            time.sleep(0.2)


def run_chief(tuner, search_kwargs: dict, workers: int, trials_per_worker: int, search_dir: Path,
              argv: list[str], deadline: float | None, address: tuple[str, str]) -> None:
    """Serves the oracle at `address` (oracle_address()) while `workers` local processes
    run the trials; returns when every trial has ended, those of workers on other
    machines included."""
    bind, port = address
    os.environ.update(KERASTUNER_TUNER_ID="chief", KERASTUNER_ORACLE_IP=bind, KERASTUNER_ORACLE_PORT=port)
    oracle = tuner.oracle
    chief = _serve_until_listening(tuner, search_kwargs, bind, port)
    env = {**os.environ, TRIALS_ENV: str(trials_per_worker), CHIEF_PID_ENV: str(os.getpid()),
           "KERASTUNER_ORACLE_IP": LOOPBACK if bind in ("0.0.0.0", "::", "[::]") else bind}
    if deadline is not None:
        env[DEADLINE_ENV] = str(deadline)
    if workers > 1:
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # workers share a GPU instead of each taking all of it

    def start(i: int) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "tuning", *worker_argv(argv, search_dir.name)],
                                env={**env, "KERASTUNER_TUNER_ID": f"worker{i}"}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        prefix = f"[worker{i}] " if workers > 1 else ""
        threading.Thread(target=_pump, args=(proc.stdout, search_dir / f"worker{i}.log", prefix), daemon=True).start()
        return proc

    print(f"chief: oracle on {bind}:{port}; trials run in {workers} worker process(es), a new one every "
          f"{trials_per_worker} trial(s) (logs: {search_dir}/worker<i>.log)", flush=True)
    running, failures = {i: start(i) for i in range(workers)}, 0
    try:
        while running:
            time.sleep(0.5)
            for i, proc in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                if code == 0:  # told by the oracle that the search is over
                    del running[i]
                elif code == RECYCLE_EXIT:
                    running[i], failures = start(i), 0
                elif code == USAGE_EXIT:  # bad input (a --strategy this machine lacks, ...): retrying cannot help
                    log = search_dir / f"worker{i}.log"
                    raise UsageError(f"{_last_line(log).removeprefix('error: ')} (worker{i}; its log: {log})")
                else:
                    log = search_dir / f"worker{i}.log"
                    trial = oracle.ongoing_trials.get(f"worker{i}")
                    if trial is not None:  # the trial dies with its process; the search goes on
                        trial.status = keras_tuner.engine.trial.TrialStatus.FAILED
                        trial.message = f"{_cause(code)} during the trial (see {log})"
                        oracle.end_trial(trial)
                        print(f"trial {trial.trial_id} failed: {trial.message}; the search goes on", flush=True)
                    failures += 1
                    if failures > 3:  # again and again: the setup is broken, not a trial
                        raise UsageError(f"worker{i} stopped: {_cause(code)}; its log ends: {_last_line(log)} (all of "
                                         f"it: {log}); rerun the same command to resume the search")
                    running[i] = start(i)  # a successor asks for the next trial (or hears the search is over)
    finally:
        for proc in running.values():
            proc.terminate()
            proc.wait(timeout=60)
    # Keras Tuner's server returns once no trial is running and every worker,
    # here or on another machine, has been told the search is over.
    chief.join(timeout=30)
    while chief.is_alive():
        held = {tuner_id: trial.trial_id for tuner_id, trial in list(oracle.ongoing_trials.items())}  # a snapshot
        print(f"chief: waiting for the workers {sorted(list(oracle.tuner_ids))} (trials they hold: {held})", flush=True)
        chief.join(timeout=30)

"""Every app's entry point, and how every command of the suite ends: one line and an exit code.

    python -m apps.<app> [flags]       main(app): train (training/run.py) and report, or --explain one input

Exit codes (docs/command-line.md): 0 done; 2 bad input (one line starting
`error:`, nothing written); 3 trained and checked, but held back by the
publishing gate; 128 + the signal's number for a stop on a signal (130 Ctrl-C,
143 SIGTERM: a backup at the step reached was written first unless the line
says `at once`); 69 another worker of a multi-worker run was lost.
"""
from __future__ import annotations

import sys

from cli.parser import parse_config
from cli.report import report
from core.errors import UsageError
from training import preemption
from training.strategy import LOST_WORKER_ERRORS, in_cluster, lost_worker_message

RESUME_HINT = "rerun the same command to resume from the last backup"
USAGE_EXIT = 2  # bad input: one line on stderr, "error: ..."
HELD_EXIT = 3  # trained, exported and checked, but held back by the publishing gate (--publish always overrides)
LOST_WORKER_EXIT = 69  # EX_UNAVAILABLE: another worker of a multi-worker run died; restart them all


class HeldBack(Exception):
    """The run finished but the publishing gate kept its version back (deployment/gate.py)."""


def train(app, config):
    """Train, evaluate and export (training/run.py), then print the closing report. A version the
    publishing gate held back ends the command with HELD_EXIT and the gate's reason; a command whose
    run already finished says where it went and trains nothing."""
    from training.run import run
    from training.run_folder import AlreadyFinished

    try:
        finished = run(app, config)
    except AlreadyFinished as done:  # the same command ran to the end before: exit 0, train nothing
        print(done, flush=True)
        return None
    if finished.chief:  # the other workers of a multi-worker run report nothing
        print(report(config, finished), flush=True)
        if finished.exported.held:
            raise HeldBack(finished.exported.lines[-1])
    return finished


def main(app, argv=None, action=train) -> int:
    """Command-line entry point of every app: python -m apps.<name> [flags].

    action(app, config) does the work: training by default; apps.charlm passes
    one that generates text instead when asked to (--generate). --explain INPUT
    explains one input with an exported model instead (cli/explain.py).
    """
    def work():
        config = parse_config(app, sys.argv[1:] if argv is None else argv)
        if config.explain is not None:  # --explain INPUT (even an empty one, which the app refuses): no training
            from cli.explain import explain_command

            return explain_command(app, config)
        # SIGTERM and Ctrl-C: a stop at a step (training/preemption.py)
        with preemption.requests.installed(RESUME_HINT):
            action(app, config)

    return guarded(work, RESUME_HINT)


def guarded(work, resume_hint: str) -> int:
    """Runs a command's work: bad input is one line and exit 2; a stop on a
    signal says where it stopped and exits 128 + the signal's number; Ctrl-C
    elsewhere says how to resume and exits 130; a worker lost from a
    multi-worker run is one line and exit 69; a version the publishing gate
    held back is one line and exit 3.
    """
    try:
        work()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_EXIT
    except HeldBack as held:
        print(f"\n{held}", file=sys.stderr)
        return HELD_EXIT
    except preemption.Stopped as stop:
        print(f"\nstopped: {stop.message}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"\ninterrupted: {resume_hint}", file=sys.stderr)
        return 130
    except LOST_WORKER_ERRORS as err:
        if not in_cluster():
            raise
        print(f"error: {lost_worker_message(err)}", file=sys.stderr)
        return LOST_WORKER_EXIT
    return 0

"""SIGTERM and Ctrl-C: finish the step, back up at it, say where it stopped, exit.

Cloud VMs, Kubernetes and Slurm send SIGTERM some seconds before they kill a
process (Kubernetes waits terminationGracePeriodSeconds, 30 s by default). While
training, the first SIGTERM or SIGINT only asks for a stop: the step in flight
finishes, the backup callback (training/backups.py) writes a backup at it,
and the run leaves with one line and exit code 128 + the signal's number (143
for SIGTERM, 130 for Ctrl-C), as a process ended by that signal would. A
second signal, or one that arrives outside training (loading data, exporting),
stops at once; the backups on disk then decide where the rerun starts.

Under MultiWorkerMirroredStrategy all workers stop at the same step,
whichever of them was signalled (StopPoint, below). The agreement goes
through TensorFlow's coordination service, as in
tf.distribute.experimental.PreemptionCheckpointHandler; that handler itself
is not used: in TF 2.21 it does nothing on CPU and TPU VMs on Google Cloud,
queries the GCE metadata server when it is created, and by default exits the
process itself after a checkpoint of its own. Keras 3 offers no preemption
handling (BackupAndRestore's save_before_preemption is gone).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading

import tensorflow as tf
from tensorflow.python.eager import context  # the coordination service's key-value store (no public API)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A stop on request: raised once the backup at the step reached is written
    (or at once outside training). A KeyboardInterrupt, so nothing on the way
    out mistakes it for an error."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum, self.message = signum, message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """SIGINT and SIGTERM as requests to stop, while installed().

    graceful (set by the backup callback while training): the first signal is
    recorded and training stops at the end of the step; otherwise, or on a
    second signal, Stopped is raised at once. A signal the process started with
    ignored (SIGINT in a shell's background job) stays ignored.
    """

    def __init__(self):
        self.received = 0  # the first signal's number while graceful, else 0
        self.graceful = False
        self.resume_hint = ""
        self._handled = ()

    @contextlib.contextmanager
    def installed(self, resume_hint: str):
        self.received, self.graceful, self.resume_hint = 0, False, resume_hint
        previous = {signum: signal.signal(signum, self._handle)
                    for signum in SIGNALS if signal.getsignal(signum) is not signal.SIG_IGN}
        self._handled = tuple(previous)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._handled = ()

    def reclaim(self):
        """Set the handlers again. Creating a MultiWorkerMirroredStrategy starts
        TensorFlow's coordination service, which installs a SIGTERM handler of
        its own in C++ (its preemption notifier) that records the signal and
        otherwise ignores it (seen with TF 2.21): SIGTERM did not stop a worker."""
        for signum in self._handled:
            signal.signal(signum, self._handle)

    def start_training(self):
        """Graceful from here on: a signal stops at the end of the step."""
        self.reclaim()
        self.graceful = True

    def _handle(self, signum, frame):
        if self.graceful and not self.received:
            self.received = signum
            print(f"\n{signal_name(signum)} received: stopping at the end of this "
                  "step, once a backup is written (send it again to stop at once)", file=sys.stderr, flush=True)
            return
        raise Stopped(signum, f"{signal_name(signum)}, at once; {self.resume_hint}")


requests = StopSignals()  # signals belong to the process: one for all of it


STOP_KEY = "tfsuite_stop"  # in the coordination service: "<global step>:<signal>", or "done" once training ended
READ_TIMEOUT_MS = 60_000  # for every worker to read a proposed stop; longer means one is gone


class StopPoint:
    """The signal training stops with at a step end (0: it goes on).

    One process: as soon as a signal has been received. Several workers: at
    the step they agreed on. The signalled worker proposes the next step end
    and waits until every worker has read it (each has a thread watching for
    it); no worker can finish that step before, as every step needs all of
    them. It adds nothing to the steps, where an all-gather of the signals
    after every step would add a collective to each.
    """

    def __init__(self, signals: StopSignals, strategy, steps_per_execution: int):
        self.signals, self.spe = signals, steps_per_execution
        self.agreed, self.proposed = None, False  # agreed: (global step, signal), once proposed by any worker
        resolver = getattr(strategy, "cluster_resolver", None)
        self.cluster = isinstance(strategy,
                                  tf.distribute.MultiWorkerMirroredStrategy) and bool(resolver.cluster_spec().jobs)
        if self.cluster:
            spec = resolver.cluster_spec()
            self.me = f"{resolver.task_type}{resolver.task_id}"
            self.tasks = [f"{job}{i}" for job in ("chief", "worker") if job in spec.jobs
                          for i in range(spec.num_tasks(job))]
            threading.Thread(target=self._watch, daemon=True, name="tfsuite-stop-watch").start()

    def at(self, global_step: int) -> int:
        if not self.cluster:
            return self.signals.received
        if self.signals.received and not self.proposed:
            self.proposed = True
            self._propose(global_step + self.spe, self.signals.received)
        return self.agreed[1] if self.agreed and global_step >= self.agreed[0] else 0

    def _propose(self, step: int, signum: int) -> None:
        store = context.context()
        try:
            store.set_config_key_value(STOP_KEY, f"{step}:{signum}")
        except tf.errors.AlreadyExistsError:
            return  # another worker proposed first (or training ended): that stands
        for task in self.tasks:  # a worker that does not answer is gone: DeadlineExceeded, exit 69
            store.get_config_key_value(f"{STOP_KEY}_read_{task}", READ_TIMEOUT_MS)

    def _watch(self) -> None:
        store = context.context()
        try:
            value = store.get_config_key_value(STOP_KEY)  # blocks until a worker sets it
            if value != "done":
                step, signum = (int(v) for v in value.split(":"))
                self.agreed = (step, signum)
                store.set_config_key_value(f"{STOP_KEY}_read_{self.me}", "1")
        except tf.errors.OpError:
            return  # the cluster is going away; the collectives say so

    def close(self) -> None:
        """At the end of training: release the watching threads (a stop, once agreed, has already)."""
        if self.cluster:
            try:
                context.context().set_config_key_value(STOP_KEY, "done")
            except tf.errors.OpError:
                pass

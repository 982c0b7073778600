"""The memory a run takes: the largest sum, at one moment, of the proportional set sizes (PSS) of its
process and every process it started (the export check), sampled every 0.2 s from /proc (Linux).

    with TreeMemory(process.pid) as memory:
        process.communicate()
    memory.peak_mb          # None where /proc has no smaps_rollup

Why PSS and a sum: a page shared by n processes counts 1/n in each, so the sum counts every page once.
RSS counts every page a process maps: TensorFlow's libraries are about 410 MB of file pages that the export
check's fresh process maps again, so a sum of RSS counts them twice, and the largest single RSS (what
getrusage gives) leaves out the check's own memory while the run waits for it. A sample can miss a peak
shorter than the interval; the run's own high-water mark (VmHWM) cannot, and is reported beside it."""
from __future__ import annotations

import os
import threading

EVERY = 0.2  # seconds between samples


def _children(pid: int) -> list[int]:
    """Every descendant of pid (gone processes are skipped)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *_children(kid)]
    return found


def pss_kb(pid: int) -> int | None:
    """The process's proportional set size in kB, or None (gone, or no smaps_rollup)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class TreeMemory:
    """Samples a process tree's summed PSS on a thread until the block ends (or stop())."""

    def __init__(self, pid: int, every: float = EVERY):
        self.pid, self.every = pid, every
        self.peak_kb: int | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            sizes = [pss_kb(p) for p in [self.pid, *_children(self.pid)]]
            known = [s for s in sizes if s is not None]
            if known:
                self.peak_kb = max(self.peak_kb or 0, sum(known))
            self._done.wait(self.every)

    @property
    def peak_mb(self) -> float | None:
        return None if self.peak_kb is None else self.peak_kb / 1024

"""A terminal that shows the suite's own lines: TensorFlow's native start-up chatter filtered out.

TensorFlow 2.21 writes C++ log lines to stderr before Python can configure
anything (TF_CPP_MIN_LOG_LEVEL does not reach them): oneDNN and CPU-feature
notes, "Could not find cuda drivers", and on machines without a GPU
`E0000 ... failed call to cuInit: INTERNAL: CUDA error`, an error-level line
that reads like a failure and is not one. Every command of the suite
(`python -m apps.<app>`, `python -m tuning`, `python -m cli.rest|publish`, the benchmarks)
therefore sends its stderr (file descriptor 2, so native code is covered too)
through a small filter process that drops those lines and passes every other
line unchanged: warnings, errors, tracebacks, fatal crash reports.

A process, not a thread: a thread dies with a crashing process and takes the
last unread lines (a segfault's report, a failed CHECK) with it, whereas the
filter drains the pipe until its last writer is gone. It runs in its own
session, so Ctrl-C at the terminal reaches the program, not the filter.

`--verbose` (or TFSUITE_VERBOSE=1) turns the filter off.
"""
from __future__ import annotations

import os
import subprocess
import sys

# Lines that are noise on every machine: INFO-level native lines (never an
# error), the absl preamble, and the CUDA probing of a CPU-only machine.
NOISE = (
    r"^I\d{4} [\d:.]+\s+\d+ \S+:\d+\] ",  # native INFO lines (oneDNN, CPU features, cudart stub, ...)
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"^[WE]\d{4} .*(failed call to cuInit|cuda_diagnostics|retrieving CUDA diagnostic|kernel driver does not appear"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|TF-TRT Warning"
    r"|Could not find TensorRT|Could not find cuda drivers"
    r"|oneDNN supports DT_BOOL only on platforms with AVX-512"  # E-level, and only a note on a fallback;
    r"|oneDNN supports DT_HALF only on platforms with AVX-512"  # a float16 run says it in its own words
    r"|jpeg_mem\.cc:\d+\] (Premature end of JPEG|Corrupt JPEG))",  # a damaged picture: the image app lists it
    # 2nd line of one
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags",
    # TFDS, on a data folder another version left behind
    r"^WARNING:absl:Variant folder .* has no (dataset_info|features)\.json",
)

_FILTER = r"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile("|".join(sys.argv[1:]))
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not noise.match(line.decode("utf-8", "replace")):
        out.write(line)
        out.flush()
"""

_installed = False
_MARK = "TFSUITE_STDERR_FILTERED"


def quiet_native_logs(argv: list[str] | None = None) -> None:
    """Route this process's stderr through the noise filter, unless --verbose is given.

    Call before TensorFlow is imported. Idempotent; a no-op when stderr is
    closed or the filter cannot start (then everything shows, as before).
    """
    global _installed
    argv = sys.argv if argv is None else argv
    if "--verbose" in argv or os.environ.get("TFSUITE_VERBOSE") == "1":
        os.environ["TFSUITE_VERBOSE"] = "1"  # and for the processes this one starts (tuning's workers)
        return
    # Native warning and info lines after start-up too; errors always show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _installed or os.environ.get(_MARK):
        return
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
        subprocess.Popen([sys.executable, "-S", "-c", _FILTER, *NOISE], stdin=read_end, stdout=original,
                         stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    except OSError:
        return
    os.close(read_end)
    sys.stderr.flush()
    os.dup2(write_end, 2)  # from here on every write to fd 2, native or Python, goes through the filter
    os.close(write_end)
    os.close(original)
    os.environ[_MARK] = "1"  # child processes inherit the filtered stderr: no second filter
    _installed = True


def started_as_program() -> bool:
    """True while `python -m <package>.<module>` imports the package: Python sets
    sys.argv[0] to "-m" until the module is found. False under pytest or an import."""
    return bool(sys.argv) and sys.argv[0] == "-m"

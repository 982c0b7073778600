"""What a person sees in the terminal: the suite's own lines, not TensorFlow's start-up chatter
(cli/terminal.py), and --help that reads like documentation (cli/parser.py, tuning/search.py)."""
import re
import signal
import subprocess
import sys

from conftest import ROOT, cli

# A program that routes its stderr through the filter, then writes what TensorFlow writes on a
# machine without a GPU, a real warning and a real error, and crashes (a segfault) before it can flush.
NOISY = r"""
import os, signal, sys
from cli import terminal
terminal.quiet_native_logs(sys.argv[1:])
lines = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796119953.086294   17869 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796120688.798553   30025 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.",
    "E0000 00:00:1796120772.731229   30648 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1796120772.894435   30648 util.cc:131] oneDNN supports DT_BOOL only on platforms with AVX-512. "
    "Falling back.",
    "E0000 00:00:1796359451.215296    2533 util.cc:131] oneDNN supports DT_HALF only on platforms with AVX-512. "
    "Falling back to the default Eigen-based implementation if present.",
    "WARNING:absl:Variant folder /root/tensorflow_datasets/mnist/3.0.1 has no dataset_info.json",
    "W0000 00:00:1796120772.894435   30648 some_op.cc:99] a real native warning",
    "E0000 00:00:1796120772.894435   30648 some_op.cc:12] a real native error",
]
os.write(2, ("\n".join(lines) + "\n").encode())  # straight to the file descriptor, as native code writes
print("error: a line of the suite's own", file=sys.stderr, flush=True)
os.kill(os.getpid(), signal.SIGSEGV)
"""


def _noisy(*argv):
    return subprocess.run([sys.executable, "-c", NOISY, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_start_up_chatter_is_filtered_and_real_lines_survive_a_crash():
    result = _noisy()
    assert result.returncode == -signal.SIGSEGV
    assert result.stderr.splitlines() == ["W0000 00:00:1796120772.894435   30648 some_op.cc:99] a real native warning",
                                          "E0000 00:00:1796120772.894435   30648 some_op.cc:12] a real native error",
                                          "error: a line of the suite's own"]


def test_verbose_shows_everything():
    result = _noisy("--verbose")
    assert len(result.stderr.splitlines()) == 11 and "failed call to cuInit" in result.stderr


def test_a_bad_flag_is_one_line_and_nothing_else():
    bad = cli("apps.mnist", "--epochs", "-1", check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "error: argument --epochs: must be positive, got -1 (see --help)\n"


def test_help_explains_every_flag_once_in_groups():
    result = cli("apps.sentiment", "--help")
    assert result.stderr == ""
    text = " ".join(result.stdout.split())
    for flag in ("--epochs", "--batch-size", "--model", "--strategy", "--mixed-precision", "--data-source",
                 "--seed", "--logdir", "--export-dir", "--fresh", "--smoke", "--xla", "--steps-per-execution",
                 "--explain INPUT", "--explain-model", "--verbose", "--max-tokens"):
        assert flag in text, flag
    assert "(default: None)" not in text and not re.search(r"\(default: [^)]*\) \(default:", text)
    for group in ("model and training:", "devices (training/strategy.py):", "data:", "logs, backups and terminal:",
                  "transfer learning", "export (", "explain a prediction instead of training", "sentiment options:",
                  "examples:"):
        assert group in text, group
    assert "--seed N" in text and "(default: 42)" in text and "GLOBAL batch size" in text
    assert "(default: bag)" in text and "bag: TF-IDF word 1-3" in text  # the model list, without "default: default:"


def test_tuning_answers_help(capsys):
    import pytest

    from tuning.search import parse

    with pytest.raises(SystemExit) as exit_:
        parse(["--help"])  # no app: before this, "error: the following arguments are required: app"
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("usage: python -m tuning APP")
    with_app = " ".join(cli("tuning", "regression", "-h").stdout.split())
    assert "--tuner" in with_app and "flags of python -m apps.regression" in with_app
    assert "--learning-rate RATE" in with_app

"""Bad input: one clear line on stderr, exit code 2, and nothing lost or left behind."""
import shutil

import pytest

from apps import mnist
from conftest import error_lines, ONLY_TRAINING
from cli.main import main


def _run(capsys, argv):
    code = main(mnist, argv)
    out, err = capsys.readouterr()
    return code, out, error_lines(err)


@pytest.fixture
def outputs(tmp_path):
    return ["--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"), "--smoke", "--data-source",
            "mirror",
            *ONLY_TRAINING]


@pytest.mark.parametrize("argv, words", [
    (["--bogus-flag"], "unrecognized arguments"),
    (["--model", "nope"], "invalid choice: 'nope'"),
    (["--epochs", "0"], "--epochs: must be positive"),
    (["--batch-size", "0"], "--batch-size: must be positive"),
    (["--strategy", "mirrored", "--cpu-devices", "2", "--batch-size", "33"], "not divisible by the 2 replicas"),
    (["--strategy", "mirrored", "--cpu-devices", "2", "--steps-per-execution", "4"], "keras issue 19246"),
    (["--strategy", "tpu"], "no TPU found"),
    (["--strategy", "gpu"], "sees no GPU"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, outputs, tmp_path, argv, words):
    code, _, lines = _run(capsys, [*outputs, *argv])
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert not (tmp_path / "sm" / "mnist" / "1").exists()
    assert not list((tmp_path / "runs").glob("mnist/*/*"))  # no run folder content left behind


def test_unreachable_data_source(capsys, outputs, tmp_path):
    code, _, lines = _run(capsys, [*outputs, "--data-source", "tfds"])
    assert code == 2 and len(lines) == 1 and "use --data-source mirror" in lines[0]
    assert not list((tmp_path / "runs").glob("mnist/*"))


def test_malformed_tf_config(capsys, outputs, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": 3}')
    code, _, lines = _run(capsys, [*outputs, "--strategy", "multi_worker"])
    assert code == 2 and len(lines) == 1 and "TF_CONFIG is malformed" in lines[0]


def test_corrupt_cache_is_reported_and_kept(capsys, outputs, tmp_path, data_dir, mnist_arrays):
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    cache = copy / "mnist" / "mnist.npz"
    with open(cache, "r+b") as f:  # flip bytes in the middle of the cache
        f.seek(cache.stat().st_size // 2)
        f.write(b"\x00garbage\x00")
    size = cache.stat().st_size
    code, _, lines = _run(capsys, [*outputs, "--data-dir", str(copy)])
    assert code == 2 and len(lines) == 1 and "is corrupt" in lines[0] and f"delete {cache}" in lines[0]
    assert cache.stat().st_size == size  # reported, not silently deleted or rebuilt


@pytest.mark.parametrize("flag", ["--export-dir", "--logdir"])
def test_unwritable_output_folder(capsys, outputs, tmp_path, flag):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = [*outputs, flag, str(blocker / "below")]
    code, _, lines = _run(capsys, argv)
    assert code == 2 and len(lines) == 1 and f"{flag} " in lines[0] and "not writable" in lines[0]
    assert blocker.read_text() == "not a folder"


def test_flags_judged_on_the_data_or_the_model_are_refused_before_the_run_says_or_writes_anything(tmp_path, capsys):
    """A --dp-delta that is not below 1/N, and an --init-from that is not a model, need the data or a built model
    to be judged; they are refused before the run prints its folder, and leave no run folder behind."""
    (tmp_path / "notes.keras").write_text("not a model")
    common = ["--smoke", "--data-source", "mirror", "--logdir", str(tmp_path / "runs"),
              "--export-dir", str(tmp_path / "sm")]
    for argv, says in ((["--dp", "--dp-delta", "0.5"], "is not below 1/N"),
                       (["--init-from", str(tmp_path / "notes.keras")], "not a Keras model")):
        assert main(mnist, [*common, *argv]) == 2
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and says in err, err
        assert "run folder" not in out and not list((tmp_path / "runs").glob("mnist/*")), out

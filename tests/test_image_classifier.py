"""apps.image_classifier: a user's folder of pictures through everything the suite does.

The pictures are real (benchmarks/image_folders.py: Fashion-MNIST from
Debian's dataset-fashion-mnist, written out as files): a messy folder with
every format and colour mode the app must read and the files it must skip,
and a small train/validation/test folder. The default tier finds, checks,
splits and refuses folders, trains the messy folder once (shared by the
serving and --explain tests) and serves TF Serving's base64 requests; the
long tier resumes bit-identically.
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import cli, error_lines, in_process, needs_fashion

from apps import image_classifier_parts as parts, image_folder
from benchmarks import image_folders
from core.errors import UsageError
from pipelines import image_files, splits


pytestmark = needs_fashion  # the pictures are Fashion-MNIST's, from Debian's package


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """The messy folder and what must become of each file."""
    folder = tmp_path_factory.mktemp("pictures") / "messy"
    return folder, image_folders.messy_folder(folder)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One DATA_DIR for the tests that read the messy folder: its first pass runs once."""
    return tmp_path_factory.mktemp("cache")


def test_every_format_and_mode_is_read_or_listed_with_its_reason(messy, cache):
    folder, expected = messy
    found = image_files.find(str(folder))
    assert found.classes == ["Bag", "Trouser"] and found.layout == "class folders"
    prepared = image_folder.prepare(Config(folder, cache), print_=lambda *a, **k: None)
    skipped = {str(Path(p).relative_to(folder)): why for p, why in prepared.skipped}
    for name, want in expected.items():
        if want == "read":
            assert name not in skipped, (name, skipped.get(name))
        else:
            assert skipped[name].startswith(want), (name, skipped[name])
    assert set(skipped) == {n for n, w in expected.items() if w != "read"}


def test_decoding_lays_transparency_over_white_and_greys_by_luma(tmp_path):
    from PIL import Image

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half, opaque on the right
    rgba[:, 5:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    rgb = image_files.decode_file(tf.constant(str(tmp_path / "t.png")), 10, 3).numpy()
    assert (rgb[:, :4] == 255).all()  # white where transparent
    assert (rgb[:, 6:] == [255, 0, 0]).all()
    grey = image_files.decode_file(tf.constant(str(tmp_path / "t.png")), 10, 1).numpy()
    assert grey.shape == (10, 10, 1) and grey[0, 9, 0] == round(255 * 0.2989) and grey[0, 0, 0] == 255
    sixteen = np.full((6, 8), 65535, np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "s.png")
    assert (image_files.decode_file(tf.constant(str(tmp_path / "s.png")), 4, 1).numpy() == 255).all()


class Config:
    def __init__(self, data, data_dir, **options):
        self.options = {"data": str(data), "image_size": 0, "channels": 0, "cache": "auto",
                        "split_fractions": "0.15,0.15", **options}
        self.data_dir, self.seed, self.smoke, self.strategy = str(data_dir), 42, False, "auto"


def test_the_split_is_stratified_stable_and_a_changed_folder_is_noticed(messy, tmp_path):
    folder, _ = messy
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    first = image_folder.prepare(Config(copy, tmp_path / "data"), print_=lambda *a, **k: None)
    again = image_folder.prepare(Config(copy, tmp_path / "data"), print_=lambda *a, **k: None)
    assert np.array_equal(first.assignment, again.assignment) and first.fingerprint == again.fingerprint
    for c in range(2):  # every class in every split
        assert {splits.TRAIN, splits.VALIDATION, splits.TEST} <= set(first.assignment[first.labels == c].tolist())
    assert (first.size, first.channels) == (40, 3)  # median shorter side; the JPEGs are RGB
    other_seed = Config(copy, tmp_path / "data")
    other_seed.seed = 7
    assert not np.array_equal(image_folder.prepare(other_seed, print_=lambda *a, **k: None).assignment,
                              first.assignment)
    shutil.copy(copy / "Bag" / "plain01.png", copy / "Bag" / "new.png")
    changed = image_folder.prepare(Config(copy, tmp_path / "data"), print_=lambda *a, **k: None)
    assert changed.fingerprint != first.fingerprint and len(changed.paths) == len(first.paths) + 1


def test_train_validation_test_folders_are_used_as_given(tmp_path):
    folder = image_folders.fashion_folder(tmp_path / "fashion", per_split=40)
    prepared = image_folder.prepare(Config(folder, tmp_path / "data"), print_=lambda *a, **k: None)
    assert [int(np.sum(prepared.assignment == code)) for code in (0, 1, 2)] == [40, 40, 40]
    assert all(f"/{splits.NAMES[code]}/" in p for p, code in zip(prepared.paths, prepared.assignment))
    assert (prepared.size, prepared.channels) == (28, 1)
    shutil.rmtree(folder / "validation")  # validation drawn from train, test as given
    drawn = image_folder.prepare(Config(folder, tmp_path / "data"), print_=lambda *a, **k: None)
    assert [int(np.sum(drawn.assignment == code)) for code in (0, 1, 2)][2] == 40
    assert 0 < int(np.sum(drawn.assignment == splits.VALIDATION)) < 40


def picture(path: Path, colour=(200, 30, 30)) -> Path:
    from PIL import Image

    Image.new("RGB", (20, 20), colour).save(path)
    return path


@pytest.mark.parametrize("case,match", [
    ("missing", "no such folder"),
    ("file", "is a file"),
    ("no_classes", "has no class folders"),
    ("one_class", "one class folder"),
    ("class_unreadable", "class 'b' has no picture that can be decoded"),
    ("all_unreadable", "none of its 2 files is a picture"),
    ("split_class_missing", "class 'b' is in train/ but not in test/"),
    ("no_train", "but no train folder"),
    ("tiny_size", "--image-size 4 is too small"),
])
def test_a_bad_folder_is_one_line_and_nothing_written(tmp_path, case, match):
    root = tmp_path / "data_folder"
    size = "0"
    if case == "file":
        root.write_text("x")
    elif case == "no_classes":
        root.mkdir()
        picture(root / "loose.png")
    elif case == "one_class":
        (root / "a").mkdir(parents=True)
        picture(root / "a" / "1.png")
    elif case in ("class_unreadable", "all_unreadable"):
        for name in "ab":
            (root / name).mkdir(parents=True)
            (root / name / "x.jpg").write_bytes(b"" if case == "all_unreadable" or name == "b" else b"")
        if case == "class_unreadable":
            picture(root / "a" / "ok.png")
    elif case in ("split_class_missing", "no_train"):
        for split, names in (("train" if case == "split_class_missing" else "validation", "ab"), ("test", "a")):
            for name in names:
                (root / split / name).mkdir(parents=True)
                picture(root / split / name / "1.png")
    elif case == "tiny_size":
        for name in "ab":
            (root / name).mkdir(parents=True)
            picture(root / name / "1.png")
        size = "4"
    before = sorted(p for p in tmp_path.rglob("*"))
    argv = ["--data", str(root), "--image-size", size, "--logdir", str(tmp_path / "runs"), "--export-dir",
            str(tmp_path / "export"), "--data-dir", str(tmp_path / "cache")]
    if case == "missing":  # the real command line once; the others in this process (cli/main.py: main)
        result = cli("apps.image_classifier", *argv, check=False, timeout=120)
        code, lines = result.returncode, error_lines(result.stderr)
    else:
        import contextlib
        import io

        from apps import image_classifier
        from cli.main import main

        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(image_classifier, argv)
        lines = error_lines(err.getvalue())
    assert code == 2 and len(lines) == 1 and match in lines[0], lines
    assert not (tmp_path / "runs").exists() and not (tmp_path / "export").exists()
    assert sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts) == before  # the user's files untouched


@pytest.fixture(scope="module")
def trained(messy, cache, tmp_path_factory):
    """The messy folder trained briefly, exported with its LiteRT files: (work folder, stdout)."""
    folder, _ = messy
    work = tmp_path_factory.mktemp("trained")
    out = in_process("image_classifier", "--data", str(folder), "--epochs", "2", "--logdir", str(work / "runs"),
                     "--export-dir", str(work / "export"), "--data-dir", str(cache))
    return work, out


def test_the_folder_trains_lists_its_skipped_files_and_exports_bytes_serving(trained, messy):
    work, out = trained
    folder, expected = messy
    assert "70 pictures in 2 classes (class folders); 10 files skipped" in out
    assert "image size 40 x 40 (the pictures' median shorter side); 3 channels" in out
    run_dir = next((work / "runs" / "image_classifier").glob("cnn_bn-*"))
    listed = (run_dir / "skipped_files.txt").read_text().splitlines()
    assert len(listed) == 10 and all(line.split("\t")[0].startswith(str(folder)) for line in listed)
    assert len((run_dir / "files.txt").read_text().splitlines()) == 70
    version = work / "export" / "messy" / "1"
    assert (version / "litert" / "model_float32.tflite").exists()
    recipe = json.loads((version / "litert" / "preprocessing.json").read_text())
    assert recipe["inputs"]["image"] == {"type": "image", "from": "image_bytes", "size": 40, "channels": 3}
    request = json.loads((version / "sample_request.json").read_text())
    assert set(request["instances"][0]) == {"image_bytes"} and set(request["instances"][0]["image_bytes"]) == {"b64"}


def test_tf_serving_requests_carry_base64_pictures_and_bad_bytes_name_the_instance(trained, messy):
    from deployment.rest import BadRequest, SessionModel

    work, _ = trained
    folder, _ = messy
    model = SessionModel(work / "export" / "messy" / "1")
    files = [folder / "Bag" / "cmyk.jpg", folder / "Trouser" / "picture.webp", folder / "Bag" / "animated.gif"]
    b64 = [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files]
    rows = model.predict({"instances": b64})["predictions"]
    columnar = model.predict({"inputs": {"image_bytes": b64}})["outputs"]
    assert [r["class"] for r in rows] == columnar["class"] and all(r["class"] in ("Bag", "Trouser") for r in rows)
    assert np.allclose([r["probabilities"] for r in rows], columnar["probabilities"], atol=1e-6)
    # The same pixels as training: the served answer equals the Keras model on the app's own decoding.
    import keras

    keras_model = keras.saving.load_model(next((work / "runs" / "image_classifier").glob("cnn_bn-*")) / "model.keras",
                                          compile=False)
    pixels = np.stack([image_files.decode_file(tf.constant(str(f)), 40, 3).numpy() for f in files])
    assert np.allclose(keras_model.predict(pixels, verbose=0), [r["probabilities"] for r in rows], atol=1e-5)
    bad = b64[:1] + [{"b64": base64.b64encode(b"not a picture").decode()}]
    with pytest.raises(BadRequest, match="instance 1 of the request .* is not a JPEG, PNG, GIF, BMP or WebP"):
        model.predict({"instances": bad})
    assert bool(parts.recognised(tf.constant([b"", b"BM", b"RIFF1234WEBP"])).numpy().tolist() == [False, True, True])


def test_explain_takes_any_picture_and_refuses_what_is_none(trained, messy):
    work, _ = trained
    folder, _ = messy
    out = in_process("image_classifier", "--explain", str(folder / "Trouser" / "sixteen_bit.png"), "--name", "messy",
                     "--export-dir", str(work / "export"), "--logdir", str(work / "runs"))
    assert "prediction:   " in out and "PNG 28 x 28 I;16: decoded and resized to 40 x 40 RGB" in out
    picture_file = Path(out.split("explanation:  ")[1].split()[0])
    assert picture_file.stat().st_size > 10_000
    result = cli("apps.image_classifier", "--explain", str(folder / "Bag" / "text.jpg"), "--name", "messy",
                 "--export-dir", str(work / "export"), "--logdir", str(work / "runs"), check=False, timeout=120)
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and lines == [f"error: --explain {folder / 'Bag' / 'text.jpg'}: not a picture; "
                                                "give a JPEG, PNG, GIF, BMP or WebP picture"]


def test_the_pipeline_decodes_files_again_without_a_cache_and_reads_the_same_pixels(messy, cache):
    folder, _ = messy
    kept = image_folder.prepare(Config(folder, cache, cache="disk"), print_=lambda *a, **k: None)
    store = image_folder.store(kept)
    assert isinstance(store, np.memmap)  # memory-mapped from DATA_DIR/images, written by the first pass
    assert kept.stored == [str(cache / "images" / f"{kept.fingerprint}-2" / "pixels-40-3-0of1.npy")]
    assert len(store) == 72 and len(kept.paths) == 70  # the cache has a row for each of the two truncated files
    numbers = tf.constant([0, 5, 33, 69], tf.int64)
    cached = image_folder.pixels_of(kept, store)(numbers).numpy()
    fresh = image_folder.pixels_of(kept._replace(cache="none"), None)(numbers).numpy()
    assert np.array_equal(fresh, cached) and cached.std() > 10


@pytest.mark.long
def test_a_killed_run_resumes_and_ends_bit_identical(tmp_path):
    from conftest import backup_steps, kill_when, rows

    folder = image_folders.fashion_folder(tmp_path / "fashion", per_split=200)
    args = ["apps.image_classifier", "--data", str(folder), "--epochs", "4", "--batch-size", "32", "--cache", "none",
            "--deterministic", "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "export"),
            "--litert", "none", "--pictures", "none"]
    run_dirs = lambda: list((tmp_path / "runs" / "image_classifier").glob("cnn_bn-*"))  # noqa: E731

    # 200 pictures: 7 steps an epoch. Just after its end, then inside epoch 3
    kill_when(args, run_dirs, lambda d: 7 in backup_steps(d / "backup"), "the end of epoch 1")
    kill_when(args, run_dirs, lambda d: any(r["global_step"] >= 17 for r in rows(d)), "step 17")
    final = cli(*args)
    assert "resuming" in final.stdout
    reference = cli(*[a if a != str(tmp_path / "runs") else str(tmp_path / "reference") for a in args])
    ours = json.loads((run_dirs()[0] / "FINISHED.json").read_text())
    theirs = json.loads((next((tmp_path / "reference" / "image_classifier").glob("cnn_bn-*")) / "FINISHED.json")
                        .read_text())
    assert ours["weights_sha256"] == theirs["weights_sha256"]
    assert [line for line in reference.stdout.splitlines() if line.startswith("Test set:")][0] in final.stdout


@pytest.mark.long
def test_two_workers_dp_and_init_from_train_a_folder(tmp_path):
    """A real two-process MultiWorkerMirroredStrategy cluster on 127.0.0.1 sharing one DATA_DIR (so they share
    the first pass, a part each, pipelines/parts.py), decoding files every epoch: each worker reads its own
    rows of every batch (pipelines/input.py: WorkerShares; the cut itself is tests/test_pipeline.py's), and
    they train one model, which only the chief exports. Then --dp, and --init-from the cluster's model."""
    from conftest import rows, start_cluster

    folder = image_folders.fashion_folder(tmp_path / "fashion", per_split=400)
    common = ["--data", str(folder), "--batch-size", "32", "--data-dir", str(tmp_path / "cache"), "--export-dir",
              str(tmp_path / "export"), "--litert", "none", "--pictures", "none"]
    workers = start_cluster(["-m", "apps.image_classifier", *common, "--epochs", "2", "--cache", "none",
                             "--strategy", "multi_worker", "--run-id", "cluster", "--logdir", str(tmp_path / "runs")])
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert all("each of the 2 workers reads only its own rows of every batch" in out for out in outputs)
    for name in ("looks", "check"):  # the first pass: each part by one of the two, each reading the other's
        done = [line for out in outputs for line in out.splitlines()
                if f"of the {name} pass (" in line and "done here" in line]
        assert sorted(line.split(" of 2 ")[0].strip() for line in done) == ["part 1", "part 2"], done
    run_dir = tmp_path / "runs" / "image_classifier" / "cluster"
    losses = [[row["loss"] for row in rows(run_dir, name)] for name in ("steps.jsonl", "steps-worker1.jsonl")]
    assert len(losses[0]) == 2 * 13 and losses[0] == pytest.approx(losses[1], rel=1e-6)  # 400 pictures, 32 a step
    assert np.mean(losses[0][13:]) < np.mean(losses[0][:13]) - 0.5  # it learned (one process: 2.22 -> 1.09)
    assert json.loads((run_dir / "FINISHED.json").read_text())["test_accuracy"] > 0.15  # 10 classes: chance is 0.1
    assert [p.name for p in (tmp_path / "export" / "fashion").iterdir()] == ["1"]
    assert not list((tmp_path / "cache").rglob("*partial*"))

    common += ["--epochs", "1", "--publish", "always"]
    private = in_process("image_classifier", *common, "--dp", "--logdir", str(tmp_path / "dp"))
    assert "model dp_cnn" in private and "epsilon:" in private
    loaded = in_process("image_classifier", *common, "--init-from", str(run_dir / "model.keras"), "--logdir",
                        str(tmp_path / "init"))
    assert "(an image_classifier model)" in loaded and ("loaded 7 layer(s): conv2d, batch_normalization, conv2d_1, "
                                                         "batch_normalization_1, dense, batch_normalization_2, "
                                                         "probabilities") in loaded  # every weighted layer at 28 x 28


@pytest.mark.parametrize("argv,match", [
    (["--data-service", "localhost:5050"], "give the dispatcher as grpc://HOST:PORT"),
    (["--data-service", "grpc://localhost:5050", "--deterministic"], "--deterministic cannot hold"),
    (["--data-service", "grpc://localhost:5050", "--cache", "memory"], "--cache memory keeps the pictures"),
])
def test_data_service_refuses_what_it_cannot_keep(messy, cache, argv, match):
    from apps import image_classifier
    from cli.parser import parse_config

    folder, _ = messy
    with pytest.raises(UsageError, match=match):
        parse_config(image_classifier, ["--data", str(folder), "--data-dir", str(cache), *argv])
    from apps import mnist

    with pytest.raises(UsageError, match="apps.mnist makes its batches in this process"):
        parse_config(mnist, ["--data-service", "grpc://localhost:5050"])


@pytest.mark.long
def test_a_tf_data_service_on_localhost_makes_the_training_batches(tmp_path):
    import signal
    import subprocess
    import sys

    from conftest import ROOT, free_ports, wait_until

    folder = image_folders.fashion_folder(tmp_path / "fashion", per_split=100)
    port = free_ports(1)[0]
    service = [subprocess.Popen([sys.executable, "-m", "pipelines.data_service", *argv], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for argv in (["dispatcher", "--port", str(port)], ["worker", "--dispatcher", f"127.0.0.1:{port}"])]
    try:
        lines = []
        wait_until(lambda: lines.append(service[1].stdout.readline()) or "worker for dispatcher" in lines[-1],
                   service[1], "the worker's start")
        out = in_process("image_classifier", "--data", str(folder), "--epochs", "2", "--batch-size", "32",
                         "--data-service", f"grpc://127.0.0.1:{port}", "--logdir", str(tmp_path / "runs"),
                         "--export-dir", str(tmp_path / "export"), "--data-dir", str(tmp_path / "cache"),
                         "--litert", "none", "--pictures", "none")
        assert "decoded pictures cached: none" in out and "Test set:" in out
        run_dir = next((tmp_path / "runs" / "image_classifier").glob("cnn_bn-*"))
        assert json.loads((run_dir / "FINISHED.json").read_text())["test_accuracy"] > 0.1
    finally:
        for proc in service:
            proc.send_signal(signal.SIGTERM)
        said = [proc.communicate(timeout=60)[0] for proc in service]
    assert all(proc.returncode == 0 for proc in service), said
    assert "tasks running on this worker: " in "".join(lines) + said[1]  # the worker made batches
    assert said[0].rstrip().endswith("stopped") and said[1].rstrip().endswith("stopped")


def test_a_cache_decoded_in_parts_reads_as_one_array():
    """--cache disk after a cluster's shared first pass: one memory-mapped file per part, read as one."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (n, 4, 4, 1), dtype=np.uint8) for n in (5, 0, 7)]  # a part may be empty
    rows = np.array([11, 0, 4, 5, 6, 4])
    assert np.array_equal(image_folder.Parted(arrays)[rows], np.concatenate(arrays)[rows])

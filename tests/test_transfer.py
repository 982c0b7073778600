"""Transfer learning: --init-from loads what matches and says so, --freeze keeps the
loaded weights, --fine-tune-epochs thaws them (and resumes across the phase
change), the character vocabulary follows the model it came from, --train-examples."""
import json
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from apps import characters, charlm, fashion_mnist, mnist, sentiment
from conftest import ROOT, backup_steps, cli, error_lines, rows, wait_until, ONLY_TRAINING, needs_fashion
from core.errors import UsageError
from pipelines.input import Splits, labelled_subset
from cli.parser import parse_config
from training.transfer import Transfer


def _save(tmp_path, app, argv, name="model"):
    """A freshly built model of `app` saved as a run folder would hold it: model.keras + run_config.json."""
    config = parse_config(app, argv)
    model, _ = app.MODELS[config.model].build(config, None, 10)
    folder = tmp_path / name
    folder.mkdir()
    model.save(folder / "model.keras")
    (folder / "run_config.json").write_text(config.to_json())
    return folder, model


def _load(app, argv, init_from):
    config = parse_config(app, [*argv, "--init-from", str(init_from)])
    model, _ = app.MODELS[config.model].build(config, None, 10)
    transfer = Transfer(config)
    return "\n".join(transfer.load(model)), model, transfer


def test_another_apps_model_gives_every_layer_but_the_output(tmp_path):
    folder, source = _save(tmp_path, mnist, [])
    report, model, transfer = _load(fashion_mnist, [], folder)
    assert "(a mnist model)" in report and "loaded 6 layer(s)" in report, report
    assert "new 1: probabilities (the output layer is fashion_mnist's own, not mnist's)" in report, report
    for theirs, ours in zip(source.layers, model.layers):
        same = all(np.array_equal(a, b) for a, b in zip(theirs.get_weights(), ours.get_weights()))
        assert same == (ours.name != "probabilities") or not ours.weights, ours.name


def test_the_same_apps_model_gives_its_output_layer_too_and_freeze_refuses_to_freeze_it_all(tmp_path):
    folder, _ = _save(tmp_path, mnist, [])
    report, _, _ = _load(mnist, [], folder)
    assert "loaded 7 layer(s)" in report and "new 0" in report, report
    with pytest.raises(UsageError, match="nothing would train"):
        _load(mnist, ["--freeze"], folder)


def test_a_partly_matching_model_loads_what_fits_and_names_the_misfits(tmp_path):
    hparams = tmp_path / "wide.json"
    hparams.write_text(json.dumps({"filters": 48}))  # every conv layer and the dense one change shape
    folder, _ = _save(tmp_path, mnist, ["--hparams", str(hparams)])
    report, _, transfer = _load(fashion_mnist, [], folder)
    assert "skipped 5 for a shape mismatch: conv2d" in report and "(3, 3, 1, 48)->(3, 3, 1, 32)" in report, report
    assert len(transfer.loaded) == 1 and "loaded 1 layer(s): batch_normalization" in report, report  # the dense's BN


@pytest.mark.parametrize("make, words", [
    (lambda p: keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="other")]).save(p / "m.keras")
     or p / "m.keras",
     "no layer of its model matches"),
    (lambda p: (p / "m.keras").write_text("not a zip") and p / "m.keras", "not a Keras model"),
    (lambda p: p / "missing.keras", "no such file or folder"),
    (lambda p: (p / "run").mkdir() or p / "run", "no model.keras in that folder"),
])
def test_nothing_to_load_is_one_line(tmp_path, make, words):
    with pytest.raises(UsageError) as err:
        _load(mnist, [], make(tmp_path))
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("argv, words", [
    (["--freeze"], "--freeze keeps the layers --init-from loads"),
    (["--init-from", "x", "--fine-tune-epochs", "2"], "the phase after --freeze's"),
    (["--fine-tune-learning-rate", "0.1"], "needs --fine-tune-epochs"),
])
def test_transfer_flags_that_do_not_fit_together(tmp_path, argv, words):
    with pytest.raises(UsageError, match=words):
        parse_config(mnist, argv)


def test_a_character_model_takes_the_vocabulary_of_the_model_it_starts_from(tmp_path):
    """Its ids must mean the same characters, or the loaded embedding would be nonsense."""
    texts = tf.data.Dataset.from_tensor_slices(["zebra", "quiz", "abc"]).batch(2)  # the training texts, batched
    base = parse_config(charlm, [])
    own = characters.vectorizer(base, texts, 8)
    folder = tmp_path / "lm"
    folder.mkdir()
    keras.Sequential([keras.Input((None,)), keras.layers.Embedding(50, 4,
                                                                   name="embedding")]).save(folder / "model.keras")
    inherited = list(reversed(own.get_vocabulary()[2:]))  # another order of the same characters
    (folder / characters.VOCABULARY_FILE).write_text(json.dumps(["", "[UNK]", *inherited]))
    config = parse_config(sentiment, ["--model", "lstm", "--init-from", str(folder)])
    taken = characters.vectorizer(config, texts, 8)
    assert taken.get_vocabulary() == ["", "[UNK]", *inherited] != own.get_vocabulary()
    assert taken(tf.constant(["z"]))[0, 0] == inherited.index("z") + 2


def test_the_char_lm_encoder_starts_the_sentiment_lstm(tmp_path):
    vectorizer = keras.layers.TextVectorization(split="character", vocabulary=list("abc"))
    splits = Splits(None, None, None, "", info={"vectorizer": vectorizer, "class_names": ("n", "p")})
    lm, _ = charlm.build_lstm(parse_config(charlm, []), splits, 10)
    (tmp_path / "lm").mkdir()
    lm.save(tmp_path / "lm" / "model.keras")
    (tmp_path / "lm" / "run_config.json").write_text(parse_config(charlm, []).to_json())
    config = parse_config(sentiment, ["--model", "lstm", "--init-from", str(tmp_path / "lm")])
    classifier, _ = sentiment.build_lstm(config, splits, 10)
    transfer = Transfer(config)
    report = "\n".join(transfer.load(classifier))
    assert "loaded 2 layer(s): embedding, lstm" in report and "new 1: probabilities" in report, report
    np.testing.assert_array_equal(classifier.get_layer("lstm").get_weights()[0], lm.get_layer("lstm").get_weights()[0])


def test_train_examples_draws_a_seeded_subset():
    ds = tf.data.Dataset.from_tensor_slices((np.arange(100), np.arange(100)))
    first = [int(x) for x, _ in labelled_subset(ds, 10, seed=1)]
    assert len(first) == 10 and first == sorted(set(first))  # distinct, in the split's order
    assert first == [int(x) for x, _ in labelled_subset(ds, 10, seed=1)]
    assert first != [int(x) for x, _ in labelled_subset(ds, 10, seed=2)]
    assert int(labelled_subset(ds, 10, seed=1).cardinality()) == 10
    with pytest.raises(UsageError, match="more than the 100 training examples"):
        labelled_subset(ds, 101, seed=1)


# ---- End to end: an MNIST model starts Fashion-MNIST, frozen, then fine-tuned (the Debian files).

SMOKE = ["--smoke", "--data-source", "mirror", "--deterministic", *ONLY_TRAINING]


def _weights(path):
    model = keras.saving.load_model(path, compile=False)
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


@pytest.fixture(scope="module")
def mnist_export(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("mnist")
    cli("apps.mnist", *SMOKE, "--logdir", str(out / "runs"), "--export-dir", str(out / "sm"))
    return out / "sm" / "mnist"


@needs_fashion
def test_freeze_keeps_every_loaded_weight_and_the_export_serves(tmp_path, mnist_export):
    result = cli("apps.fashion_mnist", *SMOKE, "--init-from", str(mnist_export), "--freeze", "--train-examples", "600",
                 "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"))
    assert "debian:dataset-fashion-mnist" in result.stdout and "loaded 6 layer(s)" in result.stdout, result.stdout
    run_dir = next((tmp_path / "runs" / "fashion_mnist").iterdir())
    before, after = _weights(mnist_export / "1" / "model.keras"), _weights(run_dir / "model.keras")
    for name, weights in after.items():
        same = all(np.array_equal(a, b) for a, b in zip(before[name], weights))
        assert same == (name != "probabilities"), name  # batch norm's moving statistics too: inference mode
    config = json.loads((run_dir / "run_config.json").read_text())
    assert config["init_from"] == str(mnist_export) and config["freeze"] and config["train_examples"] == 600
    assert rows(run_dir)[-1]["global_step"] == 5  # 600 examples in batches of 128, the last partial one kept
    export = tmp_path / "sm" / "fashion_mnist" / "1"
    assert (export / "model.keras").exists()
    served = subprocess.run([sys.executable, "-c", "import sys, json, numpy as np, tensorflow as tf\n"
                             "f = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
                             "print(f(images=tf.zeros([2, 28, 28], tf.uint8))['class'].numpy().tolist())", str(export)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert served.returncode == 0 and len(json.loads(served.stdout.splitlines()[-1])) == 2, served.stderr[-2000:]


@needs_fashion
@pytest.mark.long
def test_fine_tuning_thaws_all_but_batch_norm_and_resumes_across_the_phase_change(tmp_path, mnist_export):
    """Phase 1 frozen (1 epoch), phase 2 everything but batch norm at a tenth of the rate (3 epochs).
    Killed in phase 2 and rerun, it ends bit-identical to the run that was never killed."""
    argv = ["apps.fashion_mnist", *SMOKE, "--init-from", str(mnist_export / "1"), "--freeze", "--epochs", "1",
            "--fine-tune-epochs", "3", "--backup-every", "4", "--export-dir", str(tmp_path / "sm")]
    whole = cli(*argv, "--logdir", str(tmp_path / "whole"))
    assert "fine-tuning: every loaded layer but batch norm unfrozen, learning rate 0.0003" in whole.stdout, whole.stdout
    run_dir = next((tmp_path / "whole" / "fashion_mnist").iterdir())
    before, after = _weights(mnist_export / "1" / "model.keras"), _weights(run_dir / "model.keras")
    for name, weights in after.items():
        same = all(np.array_equal(a, b) for a, b in zip(before[name], weights))
        assert same == name.startswith("batch_normalization"), name
    assert [r["global_step"] for r in rows(run_dir)] == list(range(1, 4 * 16 + 1))  # on through the new optimizer

    proc = subprocess.Popen([sys.executable, "-m", *argv, "--logdir", str(tmp_path / "killed")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    backups = lambda: [s for d in (tmp_path / "killed").glob("fashion_mnist/*") for s in backup_steps(d / "backup")]  # noqa: E731
    wait_until(lambda: any(s > 20 for s in backups()), proc, "a backup in the fine-tuning phase")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    resumed = cli(*argv, "--logdir", str(tmp_path / "killed"))
    assert "resuming in epoch 2" in resumed.stdout or "resuming in epoch 3" in resumed.stdout, resumed.stdout
    digest = lambda out: [line for line in out.splitlines() if line.startswith("Weights:")]  # noqa: E731
    assert digest(resumed.stdout) == digest(whole.stdout)


@needs_fashion
@pytest.mark.long
def test_both_phases_under_a_mirrored_strategy(tmp_path, mnist_export):
    """Loading into mirrored variables, and the second compile with its new optimizer, on 2 replicas."""
    result = cli("apps.fashion_mnist", *SMOKE, "--strategy", "mirrored", "--cpu-devices", "2", "--init-from",
                 str(mnist_export), "--freeze", "--epochs", "1", "--fine-tune-epochs", "1", "--train-examples", "640",
                 "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"))
    assert "over 2 replica(s)" in result.stdout and "fine-tuning: every loaded layer" in result.stdout, result.stdout
    run_dir = next((tmp_path / "runs" / "fashion_mnist").iterdir())
    assert [r["global_step"] for r in rows(run_dir)] == list(range(1, 2 * 5 + 1))
    before, after = _weights(mnist_export / "1" / "model.keras"), _weights(run_dir / "model.keras")
    assert not np.array_equal(before["conv2d"][0], after["conv2d"][0])  # thawed in the second phase
    assert all(np.array_equal(a, b) for a, b in zip(before["batch_normalization"], after["batch_normalization"]))


# ---- Fashion-MNIST's two sources.

def test_fashion_mnist_through_tfds(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from pipelines import fashion_mnist as data, sources

    monkeypatch.setattr(sources, "internet_reachable", lambda *a: True)
    with tfds.testing.mock_data(num_examples=16):
        splits = data.load("online", str(tmp_path))
    assert splits.source.startswith("tfds:fashion_mnist")
    for ds in splits[:3]:
        assert ds.element_spec == (tf.TensorSpec((28, 28, 1), tf.uint8), tf.TensorSpec((), tf.int64))


@needs_fashion
def test_fashion_mnist_from_the_debian_files_is_the_authors_data():
    from pipelines import fashion_mnist as data

    arrays = data.debian_arrays()
    assert arrays["x_train"].shape == (60000, 28, 28, 1) and arrays["x_test"].shape == (10000, 28, 28, 1)
    assert np.bincount(arrays["y_test"]).tolist() == [1000] * 10
    assert arrays["y_train"][:5].tolist() == [9, 0, 0, 3, 0]  # ankle boot, T-shirt, T-shirt, dress, T-shirt
    import hashlib

    for name, md5 in data.AUTHORS_MD5.items():  # the header put back gives the authors' published MD5 too
        raw = (data.DEBIAN_DIR / f"{name}.gz").read_bytes()
        assert hashlib.md5(data.authors_bytes(name, raw)).hexdigest() == md5


@needs_fashion
@pytest.mark.parametrize("damage, words", [
    ("flip", "not the Fashion-MNIST authors' file (sha256 mismatch)"),
    ("remove", "cannot read"),
    ("authors", None),  # the authors' own download in the folder is accepted as it is
])
def test_fashion_mnist_files_are_checked(tmp_path, monkeypatch, damage, words):
    from pipelines import fashion_mnist as data

    for name in data.AUTHORS_SHA256:
        (tmp_path / f"{name}.gz").write_bytes((data.DEBIAN_DIR / f"{name}.gz").read_bytes())
    target = tmp_path / "t10k-labels-idx1-ubyte.gz"
    if damage == "flip":
        raw = bytearray(target.read_bytes())
        raw[100] ^= 1
        target.write_bytes(bytes(raw))
    elif damage == "remove":
        target.unlink()
    else:
        target.write_bytes(data.authors_bytes("t10k-labels-idx1-ubyte", target.read_bytes()))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path)
    if words is None:
        assert len(data.debian_arrays()["y_test"]) == 10000
        return
    with pytest.raises(UsageError) as err:
        data.debian_arrays()
    assert words in str(err.value) and "apt-get install dataset-fashion-mnist" in str(err.value)


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    result = cli("apps.fashion_mnist", "--smoke", "--data-source", "mirror", "--logdir", str(tmp_path / "runs"),
                 env={"TFSUITE_FASHION_MNIST_DIR": str(tmp_path / "nowhere")}, check=False)
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, lines
    assert "sudo apt-get install dataset-fashion-mnist" in lines[0], lines
    runs = tmp_path / "runs" / "fashion_mnist"
    assert not runs.exists() or not any(runs.iterdir())


@needs_fashion
def test_a_search_starts_every_trial_from_the_model(tmp_path, mnist_export, capsys):
    from tuning.search import main

    argv = ["fashion_mnist", *SMOKE, "--init-from", str(mnist_export), "--freeze", "--tuner", "random",
            "--max-trials", "1", "--workers", "0", "--no-retrain", "--logdir", str(tmp_path / "runs")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "loaded 6 layer(s)" in out and "1 trial(s): 1 completed" in out, out
    assert main([*argv, "--fine-tune-epochs", "2", "--fresh"]) == 2
    assert "a trial trains one phase" in capsys.readouterr().err

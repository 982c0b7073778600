"""Mixed precision (training/precision.py): what a GPU (float16) or a TPU (bfloat16) user gets by default, run on
the CPU. What stays float32, the float32 copy the LiteRT files come from, the export check's tolerance and the
converter's refusals in one line; and, in the long tier, every app end to end under both precisions."""
import json

import keras
import numpy as np
import pytest

from conftest import cli, error_lines, in_process, needs_fashion, needs_fortunes

from benchmarks import tables as real
from deployment import precision
from training.precision import cpu_note, resolve_mixed_precision


def _mnist_model(policy: str):
    from apps import images, mnist
    from cli.parser import parse_config

    keras.mixed_precision.set_global_policy(policy)
    model, _ = images.build_cnn_bn(parse_config(mnist, []), None, 430)
    return model


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_float32_copy_holds_the_trained_weights_in_float32(policy):
    model = _mnist_model(policy)
    keras.mixed_precision.set_global_policy("float32")  # what a later process would have: the copy must not care
    assert precision.compute_dtype(model) == policy.removeprefix("mixed_")
    # pixels, batch norm's statistics and the softmax in float32 whatever the policy
    assert model.get_layer(index=1).compute_dtype == "float32"  # Rescaling
    assert model.layers[-1].compute_dtype == "float32" and model.layers[-1].name == "probabilities"
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    copy = precision.float32_copy(model)
    assert copy is not model and precision.compute_dtype(copy) == "float32"
    assert {layer.compute_dtype for layer in copy._flatten_layers(include_self=False)} == {"float32"}
    for mine, theirs in zip(model.weights, copy.weights):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))  # the same bits, not rounded
    got, want = np.asarray(model(images)), np.asarray(copy(images))
    assert got.dtype == want.dtype == np.float32
    assert precision.close(got, want, precision.compute_dtype(model)).all()  # within one rounding of the format
    assert precision.float32_copy(copy) is copy  # a float32 model is its own copy


def test_regression_standardisation_stays_float32_under_float16(data_dir):
    """A car's weight (up to 5,140 lb) has a variance of about 700,000: in float16 it is infinite and the
    standardised weight column is 0 for every car (that export failed its session-loader check)."""
    from apps import regression
    from cli.parser import parse_config

    keras.mixed_precision.set_global_policy("mixed_float16")
    config = parse_config(regression, ["--smoke", "--data-source", "mirror"])
    splits = regression.load_data(config)
    model, _ = regression.MODELS["ensemble"].build(config, splits, 3)
    standardise = model.get_layer("standardise")
    assert standardise.compute_dtype == "float32" and np.isfinite(np.asarray(standardise.variance)).all()
    features, _ = next(iter(splits.test.batch(8)))
    columns = np.asarray(keras.Model(model.input, standardise.output)(dict(features)))
    assert columns.dtype == np.float32 and np.isfinite(columns).all() and columns[:, 3].std() > 0.1  # weight varies
    nested = precision.float32_copy(model)  # the members form a nested model: copied too
    assert {layer.compute_dtype for layer in nested.get_layer("members").layers} == {"float32"}


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_float32_copy_keeps_an_adapted_vectorizers_vocabulary_and_idf_weights(policy):
    """A table's free-text column is TF-IDF from an adapted TextVectorization, whose vocabulary and IDF
    weights are not among the weights set_weights copies (its export failed: no attribute idf_weights_const)."""
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(policy)
    vectorizer = keras.layers.TextVectorization(max_tokens=20, output_mode="tf_idf", name="words")
    vectorizer.adapt(tf.constant(["red car", "blue car", "red red bus"]))
    text = keras.Input((), dtype="string")
    model = keras.Model(text, keras.layers.Dense(2)(vectorizer(text)))
    copy = precision.float32_copy(model)
    batch = tf.constant(["red bus", "green car"])
    assert copy.get_layer("words").get_vocabulary() == vectorizer.get_vocabulary()
    assert np.allclose(np.asarray(copy(batch)), np.asarray(model(batch), np.float32), atol=2e-2)
    assert np.abs(np.asarray(copy(batch))).max() > 0


def test_agreement_allows_the_formats_rounding_and_tied_classes_but_nothing_more():
    from deployment.check import Agreement

    probabilities = np.array([[0.70, 0.20, 0.10], [0.4999, 0.5001, 0.0]], np.float32)
    want = {"probabilities": probabilities, "class": np.array([0, 1])}
    agreement = Agreement("float16", "probabilities")
    agreement.check({"probabilities": probabilities + 4e-4, "class": np.array([0, 1])}, want, "here")
    agreement.check({"probabilities": probabilities, "class": np.array([0, 0])}, want, "here")  # a tie at float16
    assert agreement.ties == 1 and agreement.max_difference["probabilities"] == pytest.approx(4e-4, rel=1e-2)
    with pytest.raises(AssertionError, match="'probabilities' differs .* by up to 0.01"):
        agreement.check({"probabilities": probabilities + 1e-2, "class": np.array([0, 1])}, want, "here")
    with pytest.raises(AssertionError, match="'class' differs from the in-memory model for 1 of 2"):
        agreement.check({"probabilities": probabilities, "class": np.array([2, 1])}, want, "here")  # not a tie
    strict = Agreement("float32", "probabilities")  # float32: the 1e-5 the float models are held to
    with pytest.raises(AssertionError):
        strict.check({"probabilities": probabilities + 4e-4, "class": np.array([0, 1])}, want, "here")
    bfloat16 = Agreement("bfloat16", "probabilities")
    bfloat16.check({"probabilities": probabilities + 5e-3, "class": np.array([0, 1])}, want, "here")


def test_a_converter_refusal_is_one_readable_line(tmp_path):
    """The converter given a float16 graph (what every float16 export met before LiteRT files came from a
    float32 copy) refuses with a page of MLIR; the suite says which ops, and why, in one line."""
    from deployment import litert
    from deployment.export import Serving, write_saved_model
    import tensorflow as tf

    model = _mnist_model("mixed_float16")
    serving = Serving("mnist", {"images": tf.TensorSpec([None, 28, 28], tf.uint8)}, ("probabilities",),
                      lambda m, images: {"probabilities": m(tf.expand_dims(images, -1))})
    write_saved_model(serving, model, tmp_path / "sm")
    with pytest.raises(Exception) as refused:
        litert.convert(tmp_path / "sm", "float32", None)
    assert "loc(" in str(refused.value)  # the raw message: MLIR
    line = litert.refusal(refused.value)
    assert "\n" not in line and len(line) < 300 and "loc(" not in line and "{" not in line, line
    assert "tf.Conv2D" in line and "f16" in line and "ERROR_NEEDS_FLEX_OPS" in line, line
    mlir = ("Could not translate MLIR to FlatBuffer.<unknown>:0: error: loc(callsite(fused[\"A:\", \"b@c\"] at "
            "fused[\"d\", \"e\"])): 'tfl.while' op Lowering tensor list ops is failed\n<unknown>:0: note: loc(x): y")
    said = "the converter refused the model: 'tfl.while' op Lowering tensor list ops is failed"
    assert litert.refusal(RuntimeError(mlir)) == said
    assert litert.crash(11) == "the converter crashed (SIGSEGV) converting this model"


# ---- The long tier: every app as a GPU or TPU user runs it, on the CPU.

APPS = {  # app -> (extra flags, --explain input, words the explanation prints)
    "mnist": ([], "digit.npy", "(top 3:"),
    # A user's folder: colour pictures of mixed formats, served as encoded bytes (Fashion-MNIST's app runs
    # apps.mnist's code, covered above).
    "image_classifier": (["--data", "{messy}"], "Trouser/sixteen_bit.png", "decoded and resized to 40 x 40 RGB"),
    "regression": ([], "4,97,88,2130,14.5,70,3,datsun pl510", "reference car:"),
    # A user's texts (apps.sentiment trains the same models on its tweets: tests/test_apps.py).
    "text_classifier": (["--data", "{languages}"], "what a great flight, thank you", "the words it rests on"),
    "charlm": (["--sequence-length", "48"], "I think that", "next character"),
    "tabular": (["--data", str(real.penguins()), "--target", "species"], "penguin.csv", "reference row:"),
}
GATED = ("mnist", "tabular")  # bfloat16 reruns through the gate: a convnet compiled with XLA, a table's lookups
SERVED = {"tabular": "penguins", "image_classifier": "messy", "text_classifier": "languages"}  # its data's name
PENGUIN = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n" \
          "Adelie,Torgersen,39.1,18.7,181,3750,male,2007\n"


def _flags(tmp_path, app) -> list:
    """APPS' flags, a picture folder or a file of texts written where one is named."""
    from benchmarks import image_folders, text_sets

    for mark, needed in ((needs_fashion, "{messy}"), (needs_fortunes, "{languages}")):
        if needed in APPS[app][0] and mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    if "{messy}" in APPS[app][0] and not (tmp_path / "messy").exists():
        image_folders.messy_folder(tmp_path / "messy")
    if "{languages}" in APPS[app][0] and not (tmp_path / "languages.csv").exists():
        text_sets.languages(tmp_path / "languages.csv", per_label=60)
    return [flag.replace("{messy}", str(tmp_path / "messy")).replace("{languages}", str(tmp_path / "languages.csv"))
            for flag in APPS[app][0]]


def _smoke(tmp_path, app, *flags, check=True):
    return cli(f"apps.{app}", "--smoke", "--data-source", "mirror", "--logdir", str(tmp_path / "runs"),
               "--export-dir", str(tmp_path / "sm"), *_flags(tmp_path, app), *flags, check=check)


def _explained(tmp_path, app, version):
    """--explain with the float16/bfloat16 export (in this process): the prediction and a picture (the app's words)."""
    given = APPS[app][1]
    if given.endswith(".npy"):
        from pipelines.mnist import mirror_arrays
        import os
        from pathlib import Path

        np.save(tmp_path / given, mirror_arrays(Path(os.environ["TFSUITE_DATA_DIR"]))["x_test"][0].reshape(28, 28))
        given = str(tmp_path / given)
    elif given.endswith(".csv"):
        (tmp_path / given).write_text(PENGUIN)
        given = str(tmp_path / given)
    elif given.endswith(".png"):
        given = str(tmp_path / "messy" / given)
    out = in_process(app, "--explain", given, "--explain-model", str(version), "--explain-to",
                     str(tmp_path / "explained.png"), "--logdir", str(tmp_path / "runs"))
    from PIL import Image

    with Image.open(tmp_path / "explained.png") as picture:
        assert "prediction:" in out and picture.size[0] >= 400, out
    return out


@pytest.mark.long
@pytest.mark.parametrize("policy", ["float16", "bfloat16"])
@pytest.mark.parametrize("app", list(APPS))
def test_every_app_end_to_end(tmp_path, data_dir, app, policy):
    """What a GPU user (float16) and a TPU user (bfloat16) get by default, XLA included (Keras compiles with it on
    one GPU; a TPU always does): train, test, export, both loaders, LiteRT files from the float32 copy, TensorBoard
    pictures and --explain. float16 makes all four LiteRT files; bfloat16 the float32 one (the copy is made the
    same way from either: the other three are that file quantised) and, for an XLA-compiled app and one that
    cannot be, runs the same command again (the same weights) through the publishing gate (float16's reruns are
    bit-identical too: test_a_float16_run_killed_and_resumed_ends_bit_identical)."""
    import tensorflow as tf
    from test_cli import _tags

    first = _smoke(tmp_path, app, "--mixed-precision", policy, "--xla", "on",
                   *(["--litert", "float32"] if policy == "bfloat16" else []))
    assert f"precision mixed_{policy}" in first.stdout and "LiteRT:" in first.stdout, first.stdout
    if app == "regression":  # the car's name is read with string ops and lookups: XLA cannot compile them
        said = "--xla on: this model trains without XLA: maker (CarMaker), origin_one_hot (IntegerLookup)"
        assert said in first.stdout
    elif app == "tabular":  # so are a table's categories
        assert "--xla on: this model trains without XLA: sex_lookup (StringLookup), island_lookup" in first.stdout
    elif app == "text_classifier":  # the bag's TF-IDF arrives sparse, and sparse ops have no XLA kernels
        assert "--xla on: this model trains without XLA: words_l2 (TfIdfNormalization)" in first.stdout
    else:
        assert "XLA: the train step is compiled with XLA (jit_compile)" in first.stdout, first.stdout
    assert not error_lines(first.stderr), first.stderr[-2000:]  # nothing but the suite's own lines
    run_dir = next((tmp_path / "runs" / app).iterdir())
    version = tmp_path / "sm" / SERVED.get(app, app) / "1"
    evaluation = json.loads((version / "evaluation.json").read_text())
    loaders, copy = evaluation["loaders"], evaluation["float32_copy"]
    assert loaders["precision"] == policy and loaders["tolerance"]["relative"] == precision.TOLERANCE[policy][0]
    litert = evaluation["litert"]
    assert litert["float32"]["kept"] and litert["float32"]["max_difference"] <= 1e-4  # reproduces the float32 copy
    expected = ["float32"] if policy == "bfloat16" else ["float32", "dynamic_range", "float16"] + (
        [] if app == "charlm" else ["int8"])
    assert sorted(litert) == sorted(expected) and not any("error" in entry for entry in litert.values()), litert
    kept = sorted(entry["file"] for entry in litert.values() if entry["kept"])
    assert sorted(p.name for p in (version / "litert").glob("*.tflite")) == kept
    # The float32 copy scores as the SavedModel does, to the precision the SavedModel computes in.
    score = evaluation["savedmodel"]["score"]
    assert abs(copy["score"] - score) <= max(0.01, 0.02 * abs(score))
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    floats = {k: v.dtype.name for k, v in signature.structured_outputs.items() if v.dtype.is_floating}
    assert floats and set(floats.values()) == {"float32"}, floats  # float32 at the outputs whatever the training
    assert {"__graph__", "epoch_loss"} <= _tags(run_dir / "train") and _tags(run_dir / "test")  # TensorBoard
    pictures = {"mnist": "explanations", "image_classifier": "explanations", "regression": "explanations/cars",
                "text_classifier": "explanations/image", "charlm": "explanations/image",
                "tabular": "explanations/rows"}[app]
    assert pictures in _tags(run_dir / "test")
    assert APPS[app][2] in _explained(tmp_path, app, version)
    if policy == "float16" or app not in GATED:
        return

    # The same command again (in this process): the same weights, scored against version 1 by the gate,
    # published as 2.
    again = in_process(app, "--smoke", "--data-source", "mirror", "--logdir", str(tmp_path / "runs"), "--export-dir",
                       str(tmp_path / "sm"), *_flags(tmp_path, app), "--mixed-precision", policy, "--xla", "on",
                       "--fresh", "--litert", "none", "--pictures", "none")
    second = json.loads((version.parent / "2" / "evaluation.json").read_text())
    assert second["previous"]["path"] == str(version)
    assert second["previous"]["score"] == score and second["savedmodel"]["score"] == score, again
    weights = [json.loads((d / "FINISHED.json").read_text())["weights_sha256"]
               for d in sorted((tmp_path / "runs" / app).iterdir()) if (d / "FINISHED.json").exists()]
    assert len(weights) == 2 and weights[0] == weights[1]


@pytest.mark.long
def test_two_replicas_in_float16_with_litert_files(tmp_path, data_dir):
    """MirroredStrategy over two logical CPUs in float16: the regression model (string features, the
    float32 standardisation) through export, both loaders and its LiteRT files."""
    result = cli("apps.regression", "--smoke", "--data-source", "mirror", "--logdir", str(tmp_path / "runs"),
                 "--export-dir", str(tmp_path / "sm"), "--strategy", "mirrored", "--cpu-devices", "2",
                 "--mixed-precision", "float16")
    assert "over 2 replica(s) (MirroredStrategy), precision mixed_float16" in result.stdout
    evaluation = json.loads((tmp_path / "sm" / "regression" / "1" / "evaluation.json").read_text())
    assert evaluation["loaders"]["precision"] == "float16" and evaluation["litert"]["float32"]["kept"]
    assert all(entry["kept"] for entry in evaluation["litert"].values()), evaluation["litert"]


@pytest.mark.long
def test_differential_privacy_in_float16(tmp_path, data_dir):
    """--dp's per-example gradients under float16's loss scaling (undone before clipping), end to end."""
    result = cli("apps.mnist", "--dp", "--smoke", "--data-source", "mirror", "--logdir", str(tmp_path / "runs"),
                 "--export-dir", str(tmp_path / "sm"), "--mixed-precision", "float16", "--litert", "none",
                 "--pictures", "none", "--publish", "always")
    assert "model dp_cnn" in result.stdout and "precision mixed_float16" in result.stdout
    privacy = json.loads((tmp_path / "sm" / "mnist" / "1" / "privacy.json").read_text())
    assert privacy["steps"] > 0 and 0 < privacy["epsilon"] < 100
    run_dir = next((tmp_path / "runs" / "mnist").iterdir())
    losses = [json.loads(line)["loss"] for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert np.isfinite(losses).all()


@pytest.mark.long
def test_a_float16_run_killed_and_resumed_ends_bit_identical(tmp_path, data_dir):
    """float16 adds state to resume exactly: the loss scale and its counter (Keras' LossScaleOptimizer).
    Killed in the middle of epoch 2 and rerun, a --deterministic run ends with the weights of one never killed."""
    from conftest import backup_steps, rows, wait_until
    from test_resume import start

    def args(logdir):
        return ["apps.mnist", "--smoke", "--batch-size", "64", "--epochs", "2", "--deterministic", "--data-source",
                "mirror", "--mixed-precision", "float16", "--logdir", str(tmp_path / logdir),
                "--export-dir", str(tmp_path / "sm"), "--litert", "none", "--pictures", "none", "--publish", "always"]

    def run_dir(logdir="runs"):
        found = list((tmp_path / logdir / "mnist").glob("*/run_config.json"))
        return found[0].parent if found else tmp_path / logdir / "mnist" / "none-yet"

    proc = start(args("runs"))  # 32 steps an epoch, a backup every 10 steps and at each epoch end
    def past_the_backup():
        return 40 in backup_steps(run_dir() / "backup") and any(r["global_step"] >= 45 for r in rows(run_dir()))

    wait_until(past_the_backup, proc, "step 45")
    proc.kill()
    proc.communicate()
    resumed = cli(*args("runs"))
    assert "resuming in epoch 2 after step 8 of 32 (global step 40)" in resumed.stdout, resumed.stdout
    cli(*args("reference"))
    hashes = [json.loads((run_dir(d) / "FINISHED.json").read_text())["weights_sha256"] for d in ("runs", "reference")]
    assert hashes[0] == hashes[1]


# ---- What --mixed-precision auto and --strategy auto pick on a GPU or TPU machine: the logic, on faked devices.

def _fake_gpus(monkeypatch, count: int, capability):
    import tensorflow as tf

    real = tf.config.list_physical_devices
    gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(count)]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else real(kind))
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda device: {"device_name": "a faked GPU", "compute_capability": capability})


@pytest.mark.parametrize("capability, policy", [((8, 0), "mixed_float16"), ((7, 0), "mixed_float16"),
                                                ((6, 1), "float32")])
def test_auto_precision_is_float16_on_a_gpu_with_tensor_cores(monkeypatch, capability, policy):
    import tensorflow as tf

    _fake_gpus(monkeypatch, 1, capability)
    assert resolve_mixed_precision("auto", tf.distribute.get_strategy()) == policy
    assert cpu_note(policy) == ""  # a GPU machine gets no "slow on a CPU" note


def test_auto_precision_is_bfloat16_on_a_tpu():
    import tensorflow as tf

    tpu = object.__new__(tf.distribute.TPUStrategy)  # the type is what is asked; no TPU to build one on
    assert resolve_mixed_precision("auto", tpu) == "mixed_bfloat16"
    assert resolve_mixed_precision("off", tpu) == "float32"  # asked for: kept


def test_auto_strategy_mirrors_over_several_gpus(monkeypatch):
    import tensorflow as tf

    from training import strategy

    made = []
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda *a: made.append(a) or "mirrored over all GPUs")
    _fake_gpus(monkeypatch, 4, (8, 0))
    assert strategy.resolve_strategy("auto") == "mirrored over all GPUs" and made == [()]
    _fake_gpus(monkeypatch, 1, (8, 0))
    assert strategy.resolve_strategy("auto") is tf.distribute.get_strategy()  # one GPU: TensorFlow's default strategy
    assert strategy.resolve_strategy("gpu") is tf.distribute.get_strategy()

"""Explanations (observation/explain.py, apps/image_pictures.py): they mean something, they add up,
and `--explain` answers a user's own input, or says in one line what was wrong with it."""
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import ROOT, train_seed_model
from observation import explain


@pytest.fixture(scope="module")
def trained_cnn(mnist_arrays):
    """The seed CNN (S2) after one epoch on 8,000 real MNIST images (about 98 % test accuracy)."""
    return train_seed_model(mnist_arrays, "cnn")[0]


def test_maps_of_the_trained_model_differ_from_maps_of_random_weights(trained_cnn, mnist_arrays):
    """Adebayo et al. 2018's model randomisation test: a saliency method whose maps stay the same when
    the weights are random explains the input, not the model. The positive control (integrated
    gradients with twice the steps) shows the measure finds equal maps equal."""
    from apps.image_pictures import explain_images

    images = mnist_arrays["x_test"][:16]
    classes = trained_cnn.predict(images, verbose=0).argmax(-1)
    assert np.mean(classes == mnist_arrays["y_test"][:16]) >= 0.8
    trained = explain_images(trained_cnn, images, classes)
    random = explain_images(explain.randomized_copy(trained_cnn), images, classes)
    grad_cam, integrated = (k for k in trained if k.startswith("Grad-CAM")), "integrated gradients"
    grad_cam = next(grad_cam)
    similarity = {k: explain.rank_correlation(trained[k], random[k]) for k in trained}
    print("rank correlation, trained vs random weights:", similarity)
    assert similarity[grad_cam] < 0.4 and similarity[integrated] < 0.4, similarity

    finer = []
    pixels = __import__("apps.image_pictures", fromlist=["pixel_model"]).pixel_model(trained_cnn)
    for image, c in zip(images.astype(np.float32) / 255.0, classes):
        attributions = explain.integrated_gradients(lambda x, c=c: pixels(x)[:, c], image, np.zeros_like(image), 64)
        finer.append(attributions[..., 0])
    assert explain.rank_correlation(trained[integrated], np.stack(finer)) > 0.9


def test_integrated_gradients_add_up_to_the_change_of_the_output(trained_cnn, mnist_arrays):
    from apps.image_pictures import pixel_model

    pixels = pixel_model(trained_cnn)
    for image in mnist_arrays["x_test"][:4].astype(np.float32) / 255.0:
        c = int(pixels(image[None]).numpy().argmax())
        f = lambda x, c=c: pixels(x)[:, c]  # noqa: E731
        attributions = explain.integrated_gradients(f, image, np.zeros_like(image))
        change = float(f(image[None])[0] - f(np.zeros_like(image)[None])[0])
        assert explain.completeness_gap(f, image, np.zeros_like(image), attributions) < 0.05 * max(abs(change), 0.1)

    # On token embeddings, through a masked LSTM: the padding at the end takes no part.
    inputs = keras.Input((None,), dtype="int64")
    x = keras.layers.Embedding(12, 4, mask_zero=True)(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.LSTM(6)(x))
    model = keras.Model(inputs, outputs)
    ids = np.array([3, 7, 5, 0, 0])
    scores = explain.embedding_attributions(model, ids, lambda out: out[:, 1], steps=64)
    embedded = np.asarray(model.layers[1](ids[None]))[0]
    zero = model.layers[2](tf.zeros((1, 5, 4)), mask=tf.constant([[True] * 3 + [False] * 2]))
    expected = float(model(ids[None])[0, 1] - model.layers[3](zero)[0, 1])
    assert np.all(scores[3:] == 0) and abs(scores.sum() - expected) < 0.01 * max(abs(expected), 0.01), (scores,
                                                                                                        expected)
    assert embedded.shape == (5, 4)


def test_occlusion_and_permutation_importance_find_what_matters():
    def predict(texts):  # "good" alone decides: positive (class 1)
        p = np.array([0.9 if "good" in t.split() else 0.2 for t in texts])
        return np.stack([1 - p, p], axis=1)

    tokens, scores = explain.word_occlusion(predict, "a good day", 1)
    assert tokens == ["a ", "good ",
                      "day"] and scores[1] == pytest.approx(np.log(0.9 / 0.2)) and scores[0] == scores[2] == 0

    rng = np.random.default_rng(0)
    features = {"weight": rng.normal(size=200), "colour": rng.normal(size=200)}
    importance = explain.permutation_importance(lambda f: 3 * f["weight"], features, 3 * features["weight"])
    assert importance["weight"][0] > 1 and importance["colour"] == (0.0, 0.0)


def _explain(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "apps.mnist", "--explain", *args, "--logdir", str(tmp_path / "runs")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_explain_a_users_picture_and_refuse_bad_ones(tmp_path, trained_cnn, mnist_arrays, capsys):
    version = tmp_path / "sm" / "mnist" / "3"
    version.mkdir(parents=True)
    trained_cnn.save(version / "model.keras")
    seven = mnist_arrays["x_test"][0, ..., 0]
    Image.fromarray(255 - seven).save(tmp_path / "drawn.png")  # dark on light, as people draw
    result = _explain(tmp_path, str(tmp_path / "drawn.png"), "--export-dir", str(tmp_path / "sm"))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line and not line.startswith(" "))
    assert lines["model"].strip() == str(version) and lines["prediction"].strip().startswith("7  (top 3: 7 ")
    assert "light background: inverted" in result.stdout
    picture = tmp_path / "runs" / "mnist" / "explanations" / "drawn-1.png"
    assert lines["explanation"].strip().startswith(str(picture)) and Image.open(picture).size[0] > 300

    # The rest in this process (the same command-line entry point): a NumPy picture, then bad input.
    from apps import mnist
    from cli.main import main

    np.save(tmp_path / "two.npy", mnist_arrays["x_test"][1, ..., 0].astype(np.float32) / 255)  # 0..1 floats
    assert main(mnist, ["--explain", str(tmp_path / "two.npy"), "--explain-model", str(version),
                        "--explain-to", str(tmp_path / "two.png")]) == 0
    assert "prediction:   2" in capsys.readouterr().out and Image.open(tmp_path / "two.png").size[0] > 300

    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "empty.jpg").write_bytes(b"")
    np.save(tmp_path / "cube.npy", np.zeros((2, 28, 28, 1)))
    for given, export, words in [("nope.png", "sm", "no such file"),
                                 ("notes.png", "sm", "not a picture Pillow can read"),
                                 ("empty.jpg", "sm", "not a picture Pillow can read"),
                                 ("cube.npy", "sm", "shape [2, 28, 28, 1] and type float64 is not a picture"),
                                 ("drawn.png", "empty", "no exported model at")]:
        code = main(mnist, ["--explain", str(tmp_path / given), "--export-dir", str(tmp_path / export),
                            "--logdir", str(tmp_path / "runs")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: --explain") and words in err, err
    assert sorted(p.name for p in picture.parent.iterdir()) == ["drawn-1.png"]  # nothing written for bad input


def test_explain_takes_a_picture_of_any_size_format_and_colour_mode(tmp_path, trained_cnn, mnist_arrays, capsys):
    """A photo of a digit as people have one: larger, in colour, 16-bit, CMYK, transparent, animated, a
    NumPy array of another size; each is made 28x28 grey, said in one line, and still read as a 7."""
    from apps import mnist
    from cli.main import main

    version = tmp_path / "sm" / "mnist" / "1"
    version.mkdir(parents=True)
    trained_cnn.save(version / "model.keras")
    seven = Image.fromarray(255 - mnist_arrays["x_test"][0, ..., 0])  # dark on white
    photo = seven.resize((100, 100), Image.BICUBIC)
    wide = Image.new("L", (150, 100), 255)
    wide.paste(photo, (25, 0))
    rgba = Image.new("RGBA", (84, 84), (0, 0, 0, 0))  # black strokes on a transparent background
    rgba.putalpha(Image.fromarray(mnist_arrays["x_test"][0, ..., 0]).resize((84, 84)))
    grey = Image.fromarray((60 + np.asarray(photo, np.float64) * 140 / 255).astype(np.uint8))  # pencil on grey paper
    cases = {
        "paper.png": (grey, "a 100x100 L PNG: resized to 28x28; light background: inverted to white on black, as "
                            "the training images are; levels stretched: 55.."),
        "photo.png": (photo.convert("RGB"), "a 100x100 RGB PNG: grey-scaled, resized to 28x28"),
        "wide.jpg": (wide, "a 150x100 L JPEG: padded to a square with its border's colour, resized to 28x28"),
        "deep.png": (Image.fromarray(np.asarray(photo, np.uint16) * 257), "a 100x100 I;16 PNG: 16-bit values "
                                                                           "scaled to 0..255, resized to 28x28"),
        "cmyk.jpg": (photo.convert("CMYK"), "a 100x100 CMYK JPEG: grey-scaled, resized to 28x28"),
        "clear.png": (rgba, "a 84x84 RGBA PNG: transparency laid over white, grey-scaled, resized to 28x28"),
        "moving.gif": (photo.convert("P"), "a 100x100 P GIF: grey-scaled, resized to 28x28"),
    }
    for name, (image, _) in cases.items():
        if name.endswith(".gif"):  # two frames: the first is the digit
            image.save(tmp_path / name, save_all=True, append_images=[Image.new("P", (100, 100))])
        else:
            image.save(tmp_path / name)
    np.save(tmp_path / "big.npy", np.asarray(photo.convert("RGB")))  # [100, 100, 3] uint8
    cases["big.npy"] = (None, "a 100x100 RGB NumPy array: grey-scaled, resized to 28x28")
    for name, (_, said) in cases.items():
        assert main(mnist, ["--explain", str(tmp_path / name), "--explain-model", str(version),
                            "--explain-to", str(tmp_path / f"{name}.explained.png")]) == 0, name
        out = capsys.readouterr().out
        assert "prediction:   7" in out and said in out and "light background: inverted" in out, (name, out)
        assert out.count(said) == 1 and Image.open(tmp_path / f"{name}.explained.png").size[0] > 300


def test_grad_cam_reads_the_last_convolution_before_it_is_pooled():
    """Grad-CAM's layer holds the last conv block's 11x11 maps whichever way the block is ordered:
    the ReLU when batch norm and ReLU come before the pooling, the convolution itself when the
    block pools first (cnn_bn's default, apps/images.py: _conv_bn); the MLP has none."""
    from apps import images, mnist
    from core.config import apply_hparams
    from cli.parser import parse_config

    def layer_of(model_name, **hparams):
        config = apply_hparams(parse_config(mnist, ["--model", model_name]), hparams)
        model = images.MODELS[model_name].build(config, None, 430)[0]
        name = explain.last_feature_maps(model)
        return name and (type(model.get_layer(name)).__name__, tuple(model.get_layer(name).output.shape[1:3]))

    assert layer_of("cnn_bn") == ("Conv2D", (11, 11))
    assert layer_of("cnn_bn", norm="before_pool") == ("ReLU", (11, 11))
    assert layer_of("convnet") == ("Conv2D", (11, 11))
    assert layer_of("mlp") is None

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

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "notes.png").write_text("not a picture")
    for given, export, words in [("big.png", "sm", "the image is 32x32; the model takes 28x28"),
                                 ("nope.png", "sm", "no such file"),
                                 ("notes.png", "sm", "not an image file"),
                                 ("drawn.png", "empty", "no exported model at")]:
        code = main(mnist, ["--explain", str(tmp_path / given), "--export-dir", str(tmp_path / export),
                            "--logdir", str(tmp_path / "runs")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: --explain") and words in err, err
    assert sorted(p.name for p in picture.parent.iterdir()) == ["drawn-1.png"]  # nothing written for bad input


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

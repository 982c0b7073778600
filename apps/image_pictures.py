"""What the 28x28 image apps show people: sample predictions, the confusion matrix and
explanations (Grad-CAM and integrated gradients), in TensorBoard and for `--explain FILE`.

Grad-CAM reads the last convolution block's feature maps (the MLP has none and
gets integrated gradients only). Integrated gradients run on the pixels in
0..1 after the model's own Rescaling, from a black image: MNIST's and
Fashion-MNIST's background, so the attributions sum to the class probability
the digit adds over an empty picture.
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from apps import picture_files
from observation import explain, figures
from observation.callbacks import Pictures, confusion_matrix

POOL = 1000  # test images the explained examples are picked from, right and wrong
EXPLAINED = 6  # rows of the explanation picture: up to half of them wrong predictions


def pixel_model(model: keras.Model) -> keras.Model:
    """The model from its Rescaling on: pixels in 0..1 (float) -> probabilities, differentiable."""
    rescaling = next(layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling))
    return keras.Model(rescaling.output, model.output)


def explain_images(model, images: np.ndarray, classes: np.ndarray) -> dict:
    """{method: [N, 28, 28] maps} for each image's class: Grad-CAM (where there is a conv layer)
    and integrated gradients from a black image."""
    maps = {}
    layer = explain.last_feature_maps(model)
    if layer is not None:
        maps[f"Grad-CAM ({layer})"] = explain.grad_cam(model, layer, images, classes, images.shape[1:3])
    pixels = pixel_model(model)
    attributions = []
    for image, c in zip(images.astype(np.float32) / 255.0, classes):
        f = lambda x, c=c: pixels(x, training=False)[:, c]  # noqa: E731  one class's probability
        attributions.append(explain.integrated_gradients(f, image, np.zeros_like(image)).sum(-1))  # over channels
    maps["integrated gradients"] = np.stack(attributions)
    return maps


def pick(predicted, labels, count: int = EXPLAINED) -> np.ndarray:
    """Indices of up to count/2 wrong predictions, the rest right ones, in test-set order."""
    wrong, right = np.flatnonzero(predicted != labels), np.flatnonzero(predicted == labels)
    wrong = wrong[:count // 2]
    return np.sort(np.concatenate([wrong, right[:count - len(wrong)]]))


def explanation_figure(model, images, labels, probabilities, class_names, title: str, grey: str = "gray_r"):
    """Grad-CAM and integrated gradients of up to 3 wrong and 3 right of `images`, given the model's probabilities."""
    predicted = probabilities.argmax(-1)
    chosen = pick(predicted, labels)
    maps = explain_images(model, images[chosen], predicted[chosen])
    captions = [f"predicted {class_names[predicted[i]]} "
                f"({probabilities[i, predicted[i]]:.2f})\ntrue {class_names[labels[i]]}"
                for i in chosen]
    return figures.image_explanations(images[chosen], maps, captions, [predicted[i] != labels[i] for i in chosen],
                                      f"What the model looks at for its predicted class, {title}", grey)


def pictures(logdir, splits, test, class_names, grey: str = "gray_r", train_begin=None) -> list:
    """Every epoch: 32 test images with their predictions, and explanations of right and wrong ones
    among the first POOL. At the end: the test set's confusion matrix, and explanations picked from
    the whole test set (one prediction of it serves both)."""
    images, labels = (np.asarray(a) for a in next(iter(splits.test.batch(POOL))))
    names = list(class_names)

    def epoch_end(model, when):
        probabilities = model.predict(images, verbose=0)
        grid = figures.sample_grid(images[:32], probabilities[:32].argmax(-1), probabilities[:32].max(-1), labels[:32],
                                   names, f"First 32 test images, {when}", grey=grey)
        return {"sample_predictions": grid,
                "explanations": explanation_figure(model, images, labels, probabilities, names, when, grey)}

    def train_end(model, when):
        every, truth = (np.concatenate(a) for a in zip(*((np.asarray(x), np.asarray(y)) for x, y in test)))
        probabilities = model.predict(test, verbose=0)
        matrix = confusion_matrix(truth, probabilities.argmax(-1), len(names))
        title = (f"Test set, {len(truth):,} images, {when}: accuracy {np.trace(matrix) / len(truth):.2%}\nrows: true "
                 "class, columns: predicted class")
        return {"confusion_matrix": figures.confusion_matrix(matrix, names, title),
                "explanations": explanation_figure(model, every, truth, probabilities, names,
                                                   f"whole test set, {when}", grey)}

    return [Pictures(logdir, epoch_end, train_end, train_begin)]


def read_image(path: str) -> tuple[np.ndarray, str]:
    """A user's picture as the model's uint8 [28, 28, 1] input, and what was done to it in one line.

    Any format, size and colour mode (apps/picture_files.py: grey-scaled, padded to a square and resized), or
    NPY. A light background (a dark digit drawn on white) is inverted to MNIST's white on black.
    """
    array, note = picture_files.read(path, (28, 28), channels=1)
    array = array[..., 0]
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    notes = [note] if note else []
    if border.mean() > 127:
        array, border = 255 - array, 255 - border
        notes.append("light background: inverted to white on black, as the training images are")
    # The training images' background is 0 and their strokes reach 255; a photo's paper is grey. Without the
    # stretch a 7 drawn on grey paper reads as an 8 (0.30) in the default model; with it as a 7 (0.98).
    background, top = float(np.median(border)), float(array.max())
    if background > 0 or top < 255:
        array = np.clip((array - background) * 255.0 / max(top - background, 1.0), 0, 255).round().astype(np.uint8)
        notes.append(f"levels stretched: {background:.0f}..{top:.0f} to 0..255, as the training images span")
    return array[..., None], "; ".join(notes)


def explain_file(model, given: str, class_names) -> explain.Explanation:
    """--explain FILE: the prediction for one picture, and its Grad-CAM and integrated gradients."""
    image, note = read_image(given)
    probabilities = model.predict(image[None], verbose=0)[0]
    top = np.argsort(probabilities)[::-1][:3]
    prediction = ", ".join(f"{class_names[c]} {probabilities[c]:.3f}" for c in top)
    maps = explain_images(model, image[None], top[:1])
    caption = f"predicted {class_names[top[0]]} ({probabilities[top[0]]:.2f})"
    title = f"What the model looks at for its prediction, {Path(given).name}"
    figure = figures.image_explanations(image[None], maps, [caption], [False], title)
    return explain.Explanation(f"{class_names[top[0]]}  (top 3: {prediction})", figure, [note] if note else [])

"""Explanations: which parts of an input a trained model's prediction rests on.

No maintained interpretability library supports Keras 3 (platform notes), and
the methods are short with tf.GradientTape:

- integrated_gradients (Sundararajan et al. 2017): the gradient averaged along
  the straight path from a baseline to the input, times (input - baseline).
  The attributions add up to f(input) - f(baseline) (completeness), which
  completeness_gap() checks. All steps of one input go through the model as
  one batch.
- grad_cam (Selvaraju et al. 2017): a convolution layer's feature maps weighted
  by the class score's mean gradient over each map, rectified.
- word_occlusion: how much the predicted class's log-probability drops when a
  word is left out of the text; for models with no gradient to a word (n-gram bags).
- permutation_importance (Breiman 2001): how much the test error grows when one
  feature's values are shuffled across the examples.
- baseline_shapley (Sundararajan and Najmi 2020, "The many Shapley values for
  model explanation"): each named input's Shapley value in the game where an
  input left out takes a reference example's value; for rows of a table, whose
  strings have no gradient. The values add up to f(input) - f(reference).
- sanity_check (Adebayo et al. 2018): maps of a model that means something
  must differ from maps of the same architecture with random weights.

The apps pick the methods and draw the results (apps/images.py,
apps/sentiment_parts.py, apps/regression_parts.py, apps/charlm_parts.py);
observation/callbacks.py's Pictures puts them in TensorBoard, and explain_command
answers `python -m apps.<app> --explain INPUT` with the newest exported model.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

STEPS = 32  # interpolation steps of integrated gradients: completeness holds to a few per cent here


def integrated_gradients(f: Callable, x: np.ndarray, baseline: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """Attributions of f's scalar output ([steps, ...] -> [steps]) to each element of one input x.

    The midpoint rule over `steps` points of the path baseline -> x, evaluated as one batch.
    """
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32).reshape((steps,) + (1,) * x.ndim)
    path = tf.constant(baseline[None] + alphas * (x - baseline)[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(path)
        scores = f(path)
    gradients = tape.gradient(scores, path).numpy()
    return gradients.mean(0) * (x - baseline)


def completeness_gap(f: Callable, x: np.ndarray, baseline: np.ndarray, attributions: np.ndarray) -> float:
    """|sum(attributions) - (f(x) - f(baseline))|: how far the path integral's estimate is off."""
    ends = np.asarray(f(tf.constant(np.stack([baseline, x]), tf.float32)))
    return float(abs(attributions.sum() - (ends[1] - ends[0])))


def embedding_attributions(model: keras.Model, ids: np.ndarray, score: Callable, steps: int = STEPS) -> np.ndarray:
    """Integrated gradients on the embedding vectors of one token sequence (ids [T]), summed over
    each vector: one attribution per token. The baseline is all-zero vectors at the same positions.

    The layers after the model's Embedding must form a chain (every sequence model here does);
    the padding mask goes to the layers that take one, as in the model itself.
    score(outputs [steps, ...]) -> [steps] picks what is explained (a class, a position's next token).
    """
    import inspect

    embedding = next(layer for layer in model.layers if isinstance(layer, keras.layers.Embedding))
    after = model.layers[model.layers.index(embedding) + 1:]
    ids = np.asarray(ids)[None]
    mask = embedding.compute_mask(ids)
    masked = [("mask" in inspect.signature(layer.call).parameters) for layer in after]

    def f(vectors):
        x = vectors
        batch_mask = None if mask is None else tf.repeat(mask, tf.shape(vectors)[0], axis=0)
        for layer, takes_mask in zip(after, masked):
            x = layer(x, mask=batch_mask, training=False) if takes_mask and batch_mask is not None else layer(x,
                                                                                                              training=False)
        return score(x)

    vectors = np.asarray(embedding(ids))[0]
    return integrated_gradients(f, vectors, np.zeros_like(vectors), steps).sum(-1)


def grad_cam(model: keras.Model, layer_name: str, inputs, classes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[N, *size] maps in 0..1 of where `layer_name`'s feature maps hold evidence for each input's class."""
    layer = model.get_layer(layer_name)
    both = keras.Model(model.input, [layer.output, model.output])
    with tf.GradientTape() as tape:
        maps, probabilities = both(inputs, training=False)
        scores = tf.gather(probabilities, classes, batch_dims=1)
    gradients = tape.gradient(scores, maps)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # one weight per feature map
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[..., None]
    cam = tf.image.resize(cam, size, method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(1).reshape(-1, 1, 1)
    return cam / np.maximum(peak, 1e-12)


def last_feature_maps(model: keras.Model) -> str | None:
    """The last layer with [batch, h, w, channels] feature maps that a convolution made
    before they are pooled: the convolution itself, or its activation, batch norm
    or the ReLU after it when those come before the pooling. None for models without one.
    (A block that pools right after its convolution gives the convolution's maps,
    at twice the resolution of what follows the pooling.)"""
    name, pooled = None, False
    for layer in model.layers:
        shape = getattr(layer, "output", None) is not None and layer.output.shape
        if not shape or len(shape) != 4:
            continue
        if isinstance(layer, keras.layers.Conv2D):
            name, pooled = layer.name, False
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            pooled = True
        elif not pooled and name and isinstance(layer, (keras.layers.ReLU, keras.layers.Activation,
                                                        keras.layers.BatchNormalization)):
            name = layer.name
    return name


def word_occlusion(predict: Callable, text: str, target: int) -> tuple[list[str], np.ndarray]:
    """(words with their trailing spaces, drop of class `target`'s log-probability when that word is left out).

    The log, not the probability: a confident model's 0.998 hardly moves when one word of
    several goes, its log-odds do. predict([texts]) -> probabilities [N, classes]; all
    leave-one-out texts go in one batch.
    """
    words = text.split(" ")
    variants = [text] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    logs = np.log(np.maximum(np.asarray(predict(variants), np.float64)[:, target], 1e-12))
    tokens = [w + " " for w in words[:-1]] + words[-1:]
    return tokens, logs[0] - logs[1:]


def absolute_error(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.abs(predictions.reshape(targets.shape) - targets)


def permutation_importance(predict: Callable, features: dict, targets: np.ndarray, repeats: int = 5,
                           seed: int = 0, error: Callable = absolute_error) -> dict[str, tuple[float, float]]:
    """{feature: (mean, std) over `repeats` shuffles of the increase in the mean error}.

    predict(features dict) -> predictions [N, ...]; every shuffled copy goes through it in one batch.
    error(predictions, targets) -> one error per example: the absolute error by default; a classifier's
    is 1 for a wrong class and 0 for a right one, so the increase is the accuracy lost.
    """
    rng = np.random.default_rng(seed)
    n, names = len(targets), list(features)
    copies = [features]
    for name in names:
        for _ in range(repeats):
            copies.append({**features, name: features[name][rng.permutation(n)]})
    stacked = {k: np.concatenate([c[k] for c in copies]) for k in features}
    predictions = np.asarray(predict(stacked))
    errors = np.array([error(predictions[i * n:(i + 1) * n], targets).mean() for i in range(len(copies))])
    increases = (errors[1:] - errors[0]).reshape(len(names), repeats)
    return {name: (float(increases[i].mean()), float(increases[i].std())) for i, name in enumerate(names)}


def baseline_shapley(predict: Callable, example: dict, reference: dict, permutations: int = 256,
                     seed: int = 0) -> tuple[np.ndarray, float, float]:
    """(Shapley value of each input of `example`, in the order of its keys; f(reference); f(example)).

    example and reference: {name: array of one value}; predict(features dict of N values) -> [N]. Every
    ordering of the inputs (all of them for up to 6 inputs, else `permutations` drawn at random, each with
    its reverse) switches the inputs one at a time from the reference's value to the example's; an input's
    value is its mean change of the prediction. Exact for up to 6 inputs; the values add up to
    f(example) - f(reference) whatever the number of orderings, because each ordering's changes do.
    """
    import itertools

    names = list(example)
    n = len(names)
    if n <= 6:
        orders = [list(p) for p in itertools.permutations(range(n))]
    else:
        rng = np.random.default_rng(seed)
        drawn = [rng.permutation(n) for _ in range(permutations // 2)]
        orders = [list(o) for d in drawn for o in (d, d[::-1])]
    steps = []  # for each ordering: the reference, then one more input switched at each step
    for order in orders:
        switched = np.zeros(n, bool)
        steps.append(switched.copy())
        for i in order:
            switched[i] = True
            steps.append(switched.copy())
    mask = np.array(steps)  # [orderings x (n + 1), n]
    batch = {name: np.where(mask[:, j], example[name][0], reference[name][0]).astype(np.asarray(example[name]).dtype)
             for j, name in enumerate(names)}
    values = np.asarray(predict(batch), np.float64).reshape(len(orders), n + 1)
    contributions = np.zeros(n)
    for k, order in enumerate(orders):
        contributions[order] += np.diff(values[k])
    return contributions / len(orders), float(values[0, 0]), float(values[0, -1])


def randomized_copy(model: keras.Model, seed: int = 1) -> keras.Model:
    """The same architecture with freshly initialised weights (Adebayo et al.'s model randomisation test)."""
    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over examples of Spearman's rank correlation between two maps of each example."""
    from scipy.stats import spearmanr

    values = []
    for x, y in zip(a, b):  # a constant map (Grad-CAM of random weights is often all zero) ranks nothing: 0
        constant = np.ptp(x) == 0 or np.ptp(y) == 0
        values.append(0.0 if constant else spearmanr(x.reshape(-1), y.reshape(-1)).statistic)
    return float(np.mean(values))


# ---- python -m apps.<app> --explain INPUT

class Explanation(NamedTuple):
    """What --explain shows: the prediction (one line), the picture, and any further lines."""

    prediction: str
    figure: object  # a matplotlib figure (observation/figures.py)
    lines: list

"""A regression's ridge regression beside the ensemble, and their blend, chosen on the validation rows.

On a small or noisy table a linear model is hard to beat: on scikit-learn's
diabetes (310 training rows) the averaged MLPs alone scored worse than a plain
ridge regression, and on the messy cars a blend beat both (docs/results.md). So apps.tabular's
regression model carries, beside its MLPs, a ridge regression on the row's
fixed encoding (standardised numbers and their quantile bins, missing flags,
date parts, one-hot categories; free text is left to the MLPs, whose learned
projection a linear model would only memorise) and a Blend layer. Training
leaves both alone (the blend's weight is 0, so the ensemble trains exactly as
it would without them). After the last epoch, finish():
  1. solves the ridge in closed form on up to RIDGE_ROWS training rows, from
     one streaming pass (X'X and X'y in float64, never the rows themselves),
     its penalty the one of ALPHAS with the lowest generalised cross-validation
     error (Golub, Heath and Wahba 1979: leave-one-out, from X'X's eigenvalues);
  2. sets the blend's weight to the one of WEIGHTS with the lowest mean
     absolute error on the validation rows (the smaller weight on a tie).
The export, its LiteRT files and --explain serve the blend. Left out, with a
line saying why: under --dp (the closed form reads the training rows without
noise, which no DP guarantee covers) and --include-validation (no held-out rows
to choose the weight on). Tuning's val_loss is the ensemble's alone.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from apps import tabular_layers as tl
from pipelines.input import evaluation_batches

RIDGE_ROWS = 200_000  # training rows the ridge is solved on, at most (the first of the split's random order)
ALPHAS = np.logspace(-2, 5, 15)  # the ridge penalties tried (the features are on a unit scale)
WEIGHTS = np.linspace(0.0, 1.0, 21)  # the ridge's share of the prediction, tried on the validation rows
BATCH = 4096


def blended(fixed, ensemble):
    """The model's regression output on the standardised scale: the ensemble's, blended with a ridge
    regression of `fixed` (both layers untrained: see finish())."""
    ridge = layers.Dense(1, trainable=False, kernel_initializer="zeros", dtype="float32", name="ridge")(fixed)
    return tl.Blend(name="blend")([ensemble, ridge])


def finish(model, splits, config) -> list[str]:
    """After training: solve the ridge, choose the blend; the lines the run prints about it."""
    if not blends(model):
        return []  # classification: no ridge
    if config.dp:
        return ["ridge blend: left out under --dp (its closed form reads the training rows without noise); the "
                "ensemble alone is served"]
    if config.include_validation:
        return ["ridge blend: left out with --include-validation (no held-out rows to choose its weight on); the "
                "ensemble alone is served"]
    target = splits.info["statistics"]["target"]

    def standardised(y):
        return (np.asarray(y, np.float64).reshape(-1) - target["mean"]) / target["scale"]

    fixed = keras.Model(model.inputs, model.get_layer("ridge").input)
    sums = Sums()
    for features, y in batches(splits.train.take(RIDGE_ROWS), splits):
        sums.add(np.asarray(fixed(features, training=False), np.float64), standardised(y))
    if sums.n < 2:
        return ["ridge blend: left out (fewer than 2 training rows); the ensemble alone is served"]
    alpha, kernel, bias = sums.solve()
    ridge = model.get_layer("ridge")
    ridge.kernel.assign(kernel[:, None].astype(np.float32))
    ridge.bias.assign(np.array([bias], np.float32))

    pair = keras.Model(model.inputs, model.get_layer("blend").input)  # [ensemble, ridge], standardised
    ensemble, linear, true = [], [], []
    for features, y in batches(splits.validation, splits):
        e, r = pair(features, training=False)
        ensemble.append(np.asarray(e, np.float64).reshape(-1))
        linear.append(np.asarray(r, np.float64).reshape(-1))
        true.append(standardised(y))
    ensemble, linear, true = (np.concatenate(a) for a in (ensemble, linear, true))
    errors = [float(np.mean(np.abs((1 - w) * ensemble + w * linear - true))) * target["scale"] for w in WEIGHTS]
    chosen = int(np.argmin(errors))
    model.get_layer("blend").weight.assign(float(WEIGHTS[chosen]))
    return [f"ridge blend: a ridge regression (penalty {alpha:.3g}, by generalised cross-validation on {sums.n:,} "
            f"training rows) weighs {WEIGHTS[chosen]:.2f} against the ensemble's {1 - WEIGHTS[chosen]:.2f}; "
            f"validation MAE over {len(true):,} rows: ensemble {errors[0]:.4g}, ridge {errors[-1]:.4g}, "
            f"blend {errors[chosen]:.4g}"]


def blends(model) -> bool:
    """Whether the model has the ridge and its blend (a regression's ensemble)."""
    return any(layer.name == "blend" for layer in model.layers)


def batches(split, splits):
    return evaluation_batches(split, global_batch=BATCH, vectorize=splits.vectorize, cache=False)


class Sums:
    """What a ridge regression with an unpenalised intercept needs from its rows: their count, sums and
    cross-products, added a batch at a time."""

    def __init__(self):
        self.n, self.x, self.y, self.xx, self.xy, self.yy = 0, 0.0, 0.0, 0.0, 0.0, 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.n += len(y)
        self.x, self.y = self.x + x.sum(0), self.y + y.sum()
        self.xx, self.xy, self.yy = self.xx + x.T @ x, self.xy + x.T @ y, self.yy + y @ y

    def solve(self) -> tuple[float, np.ndarray, float]:
        """(the penalty chosen, the kernel, the bias): on the centred rows, each penalty's solution and its
        generalised cross-validation error n RSS / (n - trace of the hat matrix)^2."""
        n, mean_x, mean_y = self.n, self.x / self.n, self.y / self.n
        xx = self.xx - n * np.outer(mean_x, mean_x)
        xy, yy = self.xy - n * mean_x * mean_y, self.yy - n * mean_y * mean_y
        eigenvalues = np.clip(np.linalg.eigvalsh(xx), 0.0, None)
        best = None
        for alpha in ALPHAS:
            w = np.linalg.solve(xx + alpha * np.eye(len(xx)), xy)
            rss = max(yy - 2 * w @ xy + w @ xx @ w, 0.0)
            freedom = n - 1 - np.sum(eigenvalues / (eigenvalues + alpha))  # the intercept takes one
            if freedom <= 0:
                continue
            score = n * rss / freedom ** 2
            if best is None or score < best[0]:
                best = (score, alpha, w)
        if best is None:  # more columns than rows at every penalty tried: the largest
            alpha = ALPHAS[-1]
            best = (0.0, alpha, np.linalg.solve(xx + alpha * np.eye(len(xx)), xy))
        _, alpha, w = best
        return float(alpha), w, float(mean_y - mean_x @ w)


def details(model) -> dict:
    """The ridge's share of the served prediction (TensorBoard's test scalars and HParams show it)."""
    if not blends(model):
        return {}
    return {"ridge_blend_weight": round(float(model.get_layer("blend").weight.numpy()), 4)}

"""Pictures for people, drawn with matplotlib (as TensorBoard's own image tutorials do).

Every figure says what it shows: axis titles, class names, counts, which data
and which training step. figure_image() turns a figure into the RGBA array
tf.summary.image takes; save() writes the PNG `--explain` leaves behind.
"""
from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server, and no GUI toolkit to import
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

WRONG = "#c62828"  # red: a wrong prediction, a negative attribution
RIGHT = "#2e7d32"  # green: a right one, a positive attribution
DIVERGING = "RdBu_r"  # attributions: blue against, red for the class


def figure_image(figure) -> np.ndarray:
    """The figure as a uint8 RGBA array [H, W, 4]; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    plt.close(figure)
    buffer.seek(0)
    return (plt.imread(buffer, format="png") * 255).round().astype(np.uint8)


def save(figure, path) -> None:
    figure.savefig(path, format="png", dpi=figure.dpi)
    plt.close(figure)


def confusion_matrix(matrix: np.ndarray, class_names, title: str):
    """Counts in every cell, rows true and columns predicted, coloured by the share of the true class."""
    n = len(class_names)
    size = max(4.5, 0.55 * n + 2)
    figure, ax = plt.subplots(figsize=(size + 1, size), dpi=100, layout="constrained")
    shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, f"{count:,}", ha="center", va="center", fontsize=8 if n > 6 else 10,
                    color="white" if shares[i, j] > 0.6 else ("black" if i == j else WRONG))
    ax.set_xticks(range(n), class_names, rotation=45 if max(map(len, class_names)) > 3 else 0, ha="right"
                  if max(map(len, class_names)) > 3 else "center")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    return figure


def show(ax, image: np.ndarray, grey: str = "gray_r") -> None:
    """One picture: RGB as it is, grey ([H, W] or [H, W, 1]) through the `grey` colour map (the 28x28 apps'
    white-on-black digits are drawn black on white, "gray_r"; a user's grey photos as they are, "gray")."""
    if image.ndim == 3 and image.shape[-1] == 3:
        ax.imshow(image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8))
    else:
        ax.imshow(image.squeeze(), cmap=grey, **(dict(vmin=0, vmax=255) if image.dtype == np.uint8 else {}))


def sample_grid(images: np.ndarray, predicted, probability, true, class_names, title: str, columns: int = 8,
                grey: str = "gray_r"):
    """Each image with "predicted (p) / true" above it; wrong ones in red with a red frame (predicted None:
    each with its class only).

    One axes with the images tiled into one picture (32 subplots took a second to draw, every epoch)."""
    n, (h, w) = len(images), images.shape[1:3]
    rows, gap = -(-n // columns), 12  # gap: room above each image for its two-line caption, in pixels
    colour = images.ndim == 4 and images.shape[-1] == 3
    canvas = np.full((rows * (h + gap), columns * (w + 2), *((3,) if colour else ())), 1.0 if colour else np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (h + gap) + gap:(r + 1) * (h + gap), c * (w + 2):c * (w + 2) + w] = (
            image / 255.0 if colour else image.squeeze())
    figure, ax = plt.subplots(figsize=(columns * 1.25 * max(1.0, w / h), rows * 1.6 + 0.5), dpi=100,
                              layout="constrained")
    if colour:
        ax.imshow(canvas, interpolation="nearest")
    else:
        ax.imshow(np.ma.masked_invalid(canvas), cmap=grey, interpolation="nearest")
    ax.axis("off")
    for i in range(n):
        r, c = divmod(i, columns)
        wrong = predicted is not None and predicted[i] != true[i]
        x, y = c * (w + 2) + w / 2, r * (h + gap) + gap - 1
        said = (f"{class_names[predicted[i]]} ({probability[i]:.2f})\ntrue {class_names[true[i]]}"
                if predicted is not None else class_names[true[i]])
        ax.text(x, y, said, ha="center", va="bottom", fontsize=8, color=WRONG if wrong else "black")
        if wrong:
            ax.add_patch(plt.Rectangle((c * (w + 2) - 0.5, r * (h + gap) + gap - 0.5), w, h, fill=False,
                                       edgecolor=WRONG, linewidth=2))
    if predicted is None:  # pictures with their labels only
        ax.set_title(title, fontsize=10)
        return figure
    wrong = int(np.sum(np.asarray(predicted) != np.asarray(true)))
    ax.set_title(f"{title}: predicted (probability) / true; {wrong} of {n} wrong, in red", fontsize=10)
    return figure


def image_explanations(images, maps: dict, captions: list[str], wrong: list[bool], title: str, grey: str = "gray_r"):
    """One row per image: the image, then each map over it. maps: {method: [N, H, W]}, signed
    (attributions, on a symmetric red-blue scale) or not (Grad-CAM, 0..1 on top of the image)."""
    n, columns = len(images), 1 + len(maps)
    figure, axes = plt.subplots(n, columns, figsize=(2.0 * columns + 1.0, 1.75 * n + 0.9), dpi=100,
                                layout="constrained", squeeze=False)
    for i in range(n):
        show(axes[i, 0], images[i], grey)
        axes[i, 0].set_ylabel(captions[i], fontsize=8, color=WRONG if wrong[i] else "black")
        for j, (method, values) in enumerate(maps.items(), start=1):
            ax = axes[i, j]
            if values[i].min() >= 0:  # Grad-CAM: where the class's evidence is, over the image
                show(ax, images[i], grey)
                shown = ax.imshow(np.ma.masked_less(values[i], 0.05), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            else:  # attributions, each image's own scale: -1 and 1 are its strongest pixels
                limit = max(np.abs(values[i]).max(), 1e-12)
                shown = ax.imshow(values[i] / limit, cmap=DIVERGING, vmin=-1, vmax=1)
            if i == 0:
                ax.set_title(method, fontsize=9)
            if i == n - 1:
                figure.colorbar(shown, ax=axes[:, j], shrink=0.6, location="bottom",
                                label="against (-) / for (+)" if values[i].min() < 0 else "evidence (1: strongest)")
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=9)
    figure.suptitle(title, fontsize=10)
    return figure


def bars(names, values, title: str, xlabel: str, errors=None):
    """Horizontal bars, largest magnitude on top; positive red-brown, negative blue."""
    order = np.argsort(np.abs(np.asarray(values)))
    names, values = [names[i] for i in order], np.asarray(values)[order]
    errors = None if errors is None else np.asarray(errors)[order]
    figure, ax = plt.subplots(figsize=(6.4, 0.35 * len(names) + 1.3), dpi=100, layout="constrained")
    ax.barh(range(len(names)), values, xerr=errors, color=[RIGHT if v >= 0 else WRONG for v in values],
            capsize=3 if errors is not None else 0)
    ax.set_yticks(range(len(names)), names)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    return figure


def predicted_vs_true(true, predicted, quantity: str, title: str):
    """Left: predicted against true with the y = x line; right: the residuals against true."""
    true, predicted = np.asarray(true).reshape(-1), np.asarray(predicted).reshape(-1)
    residuals = predicted - true
    figure, (left, right) = plt.subplots(1, 2, figsize=(9.4, 4.2), dpi=100, layout="constrained")
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    left.plot([low, high], [low, high], color="grey", linewidth=1, label="y = x (perfect)")
    left.scatter(true, predicted, s=14, alpha=0.7)
    left.set_xlabel(f"true {quantity}")
    left.set_ylabel(f"predicted {quantity}")
    left.legend(loc="upper left")
    right.axhline(0, color="grey", linewidth=1)
    right.scatter(true, residuals, s=14, alpha=0.7, color="#6a1b9a")
    right.set_xlabel(f"true {quantity}")
    right.set_ylabel(f"residual (predicted - true) {quantity}")
    figure.suptitle(f"{title}: {len(true)} examples, mean absolute error {np.abs(residuals).mean():.3f}", fontsize=10)
    return figure


CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # drawn as "·": the font has no glyph (a tab, a terminal's backspace)


def highlighted_text(lines: list[tuple[list[str], np.ndarray, str]], title: str, width: float = 9.0):
    """Texts with every token on a background by its attribution: green for the prediction,
    red against it, white for nothing. lines: [(tokens, scores, caption)]; tokens keep their spaces."""
    height = 0.9 + sum(0.55 + 0.32 * (1 + len("".join(t)) // 70) for t, _, _ in lines)
    figure = plt.figure(figsize=(width, height), dpi=100)
    renderer = figure.canvas.get_renderer()
    figure.text(0.01, 1 - 0.3 / height, title, fontsize=10, weight="bold", va="top")
    y = 1 - 0.75 / height
    for tokens, scores, caption in lines:
        figure.text(0.01, y, caption, fontsize=8.5, va="top", color="#333333")
        y -= 0.3 / height
        x, limit = 0.01, max(np.abs(scores).max(), 1e-9)
        for token, score in zip(tokens, scores):
            strength = min(abs(score) / limit, 1.0)
            colour = (1 - 0.7 * strength, 1, 1 - 0.7 * strength) if score > 0 else (1, 1 - 0.7 * strength,
                                                                                    1 - 0.7 * strength)
            shown = CONTROL.sub("·", token.replace("\n", "⏎").replace("\t", " ")).replace("$", r"\$")
            text = figure.text(x, y, shown, fontsize=11, va="top",
                               family="monospace", bbox=dict(facecolor=colour, edgecolor="none", pad=1.5))
            advance = (text.get_window_extent(renderer).width + 4) / (width * figure.dpi)  # + the boxes' padding
            if x + advance > 0.98 and x > 0.01:
                x, y = 0.01, y - 0.32 / height
                text.set_position((x, y))
            x += advance
        y -= 0.5 / height
    return figure

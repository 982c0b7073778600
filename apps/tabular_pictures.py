"""apps.tabular in TensorBoard: the column table and the target per split at the start, eight test rows
predicted after every epoch, and at the end the confusion matrix or predicted against true, permutation
importance of the raw columns and a few test rows explained (apps/tabular_parts.py: baseline Shapley values).
"""
from __future__ import annotations

import numpy as np

from apps import tabular_parts as parts
from observation import explain, figures
from observation.callbacks import Pictures

EXPLAINED_ROWS = 4  # test rows explained in TensorBoard at the end of training
IMPORTANCE_ROWS = 2_000  # test rows permutation importance shuffles, at most


def pictures(logdir: str, splits, test) -> list:
    """Start: the column table, the split and the target. Every epoch: eight test rows predicted. End:
    the confusion matrix (classification) or predicted against true (regression), permutation
    importance of the raw columns, and EXPLAINED_ROWS test rows explained."""
    info = splits.info
    prepared, read = info["prepared"], info["reader"].read
    classes = prepared.classes
    rows, found = next(iter(splits.test.batch(IMPORTANCE_ROWS)))
    features, found = read(np.asarray(rows)), np.asarray(found).reshape(-1)
    sample = {k: v[:8] for k, v in features.items()}

    def train_begin():
        return {"data/columns": column_table(prepared), "data/target": target_figure(prepared)}

    def epoch_end(model, when):
        _, chosen = parts.scored(model, sample, classes)
        names = list(sample)
        lines = ["| " + " | ".join(names) + " | predicted | true |", "|---" * (len(names) + 2) + "|"]
        for i in range(len(chosen)):
            said = classes[int(chosen[i])] if classes else f"{chosen[i]:.4g}"
            true = classes[int(found[i])] if classes else f"{found[i]:.4g}"
            lines.append("| " + " | ".join(parts.cell(sample[n][i]) for n in names) + f" | {said} | {true} |")
        return {"sample_predictions/table": "\n".join(lines)}

    def train_end(model, when):
        _, chosen = parts.scored(model, features, classes)
        out = {}
        if classes:
            matrix = np.zeros((len(classes), len(classes)), np.int64)
            np.add.at(matrix, (found.astype(int), chosen.astype(int)), 1)
            out["confusion_matrix"] = figures.confusion_matrix(
                matrix, classes, f"Test set ({len(found):,} rows), {when}: accuracy {np.mean(chosen == found):.2%}")
            def error(p, t):
                return (p.argmax(-1) != t).astype(float)

            label = "accuracy lost (points of 1.0)"
        else:
            out["predicted_vs_true"] = figures.predicted_vs_true(found, chosen, prepared.target.name,
                                                                 f"Test set, {when}")
            error = explain.absolute_error
            label = "increase of the mean absolute error"
        importance = explain.permutation_importance(lambda f: parts.predict(model, f), features, found, error=error)
        out["explanations/permutation_importance"] = figures.bars(
            list(importance), [m for m, _ in importance.values()],
            f"Test set ({len(found):,} rows), {when}:\nhow much worse the model does with one column\nshuffled "
            "across the rows (5 shuffles; bars: their spread)", label, errors=[sd for _, sd in importance.values()])
        shown = {k: v[:EXPLAINED_ROWS] for k, v in features.items()}
        out["explanations/rows"] = parts.rows_figure(model, shown, classes, f"Test rows, {when}",
                                                     found[:EXPLAINED_ROWS])
        return out

    return [Pictures(logdir, epoch_end, train_end, train_begin)]


def column_table(prepared) -> str:
    """The printed column table as markdown, with the split."""
    header = "| column | served as | type | why |\n|---|---|---|---|\n"
    used = {c.name: c for c in prepared.inputs}
    lines = []
    for name, kind in prepared.kinds.items():
        served = used[name].served if name in used else ("(target) " + prepared.target.served
                                                         if name == prepared.target.name else "left out")
        lines.append(f"| {name} | {served} | {kind.kind} | {kind.why} |")
    counts = prepared.counts
    return (header + "\n".join(lines) + f"\n\nTarget: **{prepared.target.name}**, {prepared.task.task} "
            f"({prepared.task.why}). Rows: {counts['train']:,} train, {counts['validation']:,} validation, "
            f"{counts['test']:,} test" + (f", {counts['left_out']:,} without a target left out" if counts["left_out"]
                                           else "") + f". Split: {prepared.about['how']}.")


def target_figure(prepared):
    """Classification: rows per class in each split; regression: the target's histogram per split."""
    import matplotlib.pyplot as plt

    from apps.tabular_data import labels
    from pipelines import splits as splitting

    figure, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100, layout="constrained")
    values = [(labels(t, prepared.target.name, prepared.classes), a) for t, a in zip(prepared.tables,
                                                                                     prepared.assignment)]
    if prepared.classes:
        k = len(prepared.classes)
        width = 0.27
        for s, (code, name) in enumerate(splitting.NAMES.items()):
            counts = sum(np.bincount(v[(a == code) & (v >= 0)], minlength=k) for v, a in values)
            bars = ax.bar(np.arange(k) + (s - 1) * width, counts, width, label=f"{name} ({counts.sum():,})")
            ax.bar_label(bars, [f"{c:,}" for c in counts], fontsize=7)
        ax.set_xticks(range(k), prepared.classes, rotation=30 if k > 6 else 0)
        ax.set_xlabel(f"class of {prepared.target.name}")
        ax.set_ylabel("rows")
        ax.set_title(f"Rows per class of {prepared.target.name}, per split")
    else:
        every = np.concatenate([v[~np.isnan(v)] for v, _ in values])
        edges = np.histogram_bin_edges(every, bins=40)  # one set of bins, outlines: no split hides another
        for code, name in splitting.NAMES.items():
            chosen = np.concatenate([v[(a == code) & ~np.isnan(v)] for v, a in values])
            ax.hist(chosen, bins=edges, histtype="step", linewidth=1.6, label=f"{name} ({len(chosen):,} rows)")
        ax.set_xlabel(prepared.target.name)
        ax.set_ylabel("rows")
        ax.set_title(f"Distribution of {prepared.target.name}, per split")
    ax.legend()
    return figure

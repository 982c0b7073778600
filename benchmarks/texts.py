"""Your own texts: `python -m apps.text_classifier`'s default against TF-IDF + logistic regression and
fastText, on real labelled texts, same splits.

    pip install -r benchmarks/requirements.txt          # scikit-learn, fasttext-numpy2-wheel
    sudo apt-get install fortunes fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-pl fortunes-cs
    python -m benchmarks.texts                          # 3 sets x 3 seeds, about 40 min on 2 CPU cores
    python -m benchmarks.texts --sets topics --seeds 0
    python -m benchmarks.texts --scale-gb 1             # only the scale rows: a 1 GB CSV, one epoch

Sets (benchmarks/text_sets.py, written as CSV files a user would have):
  - languages: every fortune of Debian's seven fortune packages (about 89,000), labelled with its language;
  - topics: the English fortunes (about 15,000), labelled with their file (43 topics, unbalanced);
  - tweets: apps.sentiment's tweets with its own split in a column (--split-column split), where the
    app must give apps.sentiment's figures, which run beside it on the same seeds.
Every seed is a split (the app's own: stratified, 70/15/15 from --seed; the tweets' split is fixed)
and a training run; the peers fit on the same training rows and are scored on the same test rows:
  - TF-IDF of word 1-2 grams and of character 2-5 grams within words (sublinear tf, scikit-learn),
    logistic regression with C chosen on the validation rows from 1 and 10;
  - fastText supervised with its text-classification tutorial's settings (lowercased, punctuation
    split off; lr 1.0, 25 epochs, word n-grams 2), the machine's cores as threads.
Accuracy and macro-F1 (every label counts once) on the test rows: the mean and spread over seeds, with the
fit time (the suite's: training alone, as FINISHED.json has it; the vocabularies' adaptation is not in it).

--scale-gb G: a CSV of at least G GB (the languages' rows repeated, each copy shuffled) read and trained for
one epoch in a fresh process at a tenth of G and at G: texts/s of the reading pass and of training, and the
peak RSS of the whole run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from apps import sentiment, text_classifier, text_classifier_data as data
from benchmarks import harness, text_sets
from cli.parser import parse_config
from core.config import default_data_dir
from pipelines import splits as splitting

PEERS = ("TF-IDF + logistic regression", "fastText")
SUITE = "suite"
SENTIMENT = "apps.sentiment"


def make_set(name: str, out: Path) -> tuple[Path, list]:
    """The set's CSV and the app's flags for it."""
    if name == "tweets":
        return text_sets.tweets(out / "tweets.csv", default_data_dir()), ["--split-column", "split"]
    return getattr(text_sets, name)(out / f"{name}.csv"), []


def split_texts(path: Path, flags: list, seed: int, data_dir: str) -> dict:
    """{split code: (texts as str, labels), "rows": {split code: rows}, "classes": how many}: the rows the app
    trains and tests on with this seed."""
    config = parse_config(text_classifier, ["--data", str(path), *flags, "--seed", str(seed), "--data-dir", data_dir])
    prepared = data.prepare(config, print_=lambda *a, **k: None)
    read = prepared.reader()
    out = {"rows": {}}
    for code in (splitting.TRAIN, splitting.VALIDATION, splitting.TEST):
        rows = out["rows"][code] = np.flatnonzero(prepared.assignment == code)
        out[code] = ([t.decode("utf-8") for t in read(rows)], prepared.labels[rows])
    out["classes"] = len(prepared.classes)
    return out


def scores(true, predicted, classes: int) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    # Every label counts in macro-F1, one absent from the test rows and never predicted as 0 (as the app does).
    return (float(accuracy_score(true, predicted)),
            float(f1_score(true, predicted, labels=list(range(classes)), average="macro", zero_division=0)))


def tfidf_logistic(texts: dict) -> tuple[float, float, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    (x, y), (xv, yv), (xt, yt) = (texts[c] for c in (splitting.TRAIN, splitting.VALIDATION, splitting.TEST))
    start = time.perf_counter()
    best = None
    for c in (1.0, 10.0):
        model = make_pipeline(
            make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
                       TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
            LogisticRegression(C=c, max_iter=1000)).fit(x, y)
        accuracy = float(np.mean(model.predict(xv) == yv))
        if best is None or accuracy > best[0]:
            best = (accuracy, model)
    seconds = time.perf_counter() - start
    return (*scores(yt, best[1].predict(xt), texts["classes"]), seconds)


PUNCTUATION = re.compile(r"([.!?,'/()])")


def fasttext_line(text: str) -> str:
    """The tutorial's preprocessing (sed "s/[.!?,'/()]/ & /g" | tr upper lower), on one line."""
    return " ".join(PUNCTUATION.sub(r" \1 ", text).lower().split())


def fasttext_peer(texts: dict, scratch: Path, seed: int) -> tuple[float, float, float]:
    import fasttext

    (x, y), (xt, yt) = texts[splitting.TRAIN], texts[splitting.TEST]
    train = scratch / "fasttext.train"
    train.write_text("".join(f"__label__{label} {fasttext_line(t)}\n" for t, label in zip(x, y)), encoding="utf-8")
    start = time.perf_counter()
    model = fasttext.train_supervised(input=str(train), lr=1.0, epoch=25, wordNgrams=2, thread=os.cpu_count(),
                                      seed=seed, verbose=0)
    seconds = time.perf_counter() - start
    labels, _ = model.predict([fasttext_line(t) for t in xt])
    predicted = np.array([int(found[0].removeprefix("__label__")) for found in labels])
    train.unlink()
    return (*scores(yt, predicted, texts["classes"]), seconds)


def run_set(name: str, seeds: list, scratch: Path, data_dir: str, log: Path) -> list[dict]:
    path, flags = make_set(name, scratch / "sets")
    found = {system: [] for system in (SUITE, *PEERS, *([SENTIMENT] if name == "tweets" else []))}
    for seed in seeds:
        result = harness.run_app(text_classifier, ["--data", str(path), *flags, "--seed", str(seed), "--data-dir",
                                                    data_dir], scratch, log=log)
        found[SUITE].append((result.results["test_accuracy"], result.results["test_macro_f1"],
                             result.training_seconds))
        if name == "tweets":
            result = harness.run_app(sentiment, ["--seed", str(seed)], scratch, log=log)
            found[SENTIMENT].append((result.results["test_accuracy"], result.results["test_macro_f1"],
                                     result.training_seconds))
        texts = split_texts(path, flags, seed, data_dir)
        found[PEERS[0]].append(tfidf_logistic(texts))
        found[PEERS[1]].append(fasttext_peer(texts, scratch, seed))
        print(f"{name} seed {seed}: " + ", ".join(f"{k} {v[-1][0]:.4f}/{v[-1][1]:.4f}" for k, v in found.items()),
              flush=True)
    counts = {k: len(v) for k, v in split_texts(path, flags, seeds[0], data_dir)["rows"].items()}
    rows = []
    for system, values in found.items():
        accuracy, f1 = [v[0] for v in values], [v[1] for v in values]
        rows.append({"set": name, "system": system, "accuracy": statistics.mean(accuracy),
                     "accuracy_spread": statistics.pstdev(accuracy), "macro_f1": statistics.mean(f1),
                     "macro_f1_spread": statistics.pstdev(f1), "accuracies": accuracy, "macro_f1s": f1,
                     "fit_seconds": statistics.mean(v[2] for v in values), "seeds": seeds,
                     "train_texts": counts[splitting.TRAIN], "test_texts": counts[splitting.TEST]})
    return rows


# ---- Scale ---------------------------------------------------------------------------

def make_large(path: Path, gigabytes: float, seed: int = 0) -> int:
    """The languages' rows, repeated (each copy in another order) until the file holds `gigabytes`: its
    distinct words and n-grams are those of the 89,000 fortunes."""
    rows = [text_sets.csv_row(text, label) for text, label in text_sets.language_rows()]
    rng = np.random.default_rng(seed)
    written = 0
    with open(path, "wb") as f:
        f.write(text_sets.HEADER)
        while f.tell() < gigabytes * 1e9:
            f.writelines(rows[i] for i in rng.permutation(len(rows)))
            written += len(rows)
    return written


def scale_row(path: Path, scratch: Path, data_dir: str) -> dict:
    """Read, adapt and train one epoch in a fresh process: its figures and its peak RSS."""
    argv = ["--data", str(path), "--epochs", "1", "--data-dir", data_dir, "--litert", "none", "--pictures", "none",
            "--fresh", "--publish", "always", "--logdir", str(scratch / "runs"),
            "--export-dir", str(scratch / "export")]
    done = harness.run_measured("apps.text_classifier", argv)
    stdout, seconds = done.stdout, done.seconds
    lines = stdout.splitlines()
    run_dir = Path(next(x.split("run folder ", 1)[1] for x in lines if x.startswith("run folder ")))
    finished = json.loads((run_dir / "FINISHED.json").read_text())
    counts = json.loads((run_dir / "split.json").read_text())["counts"]
    reading = [x for x in lines if "texts (" in x and str(path) in x]
    return {"bytes": path.stat().st_size, "texts": sum(counts.values()), "train_texts": counts["train"],
            "wall_seconds": seconds, "training_seconds": finished["training_seconds"],
            "train_texts_per_second": counts["train"] / finished["training_seconds"],
            "texts_per_second_overall": sum(counts.values()) / seconds, "peak_rss_mb": done.peak_rss_mb,
            "peak_memory_mb": done.peak_memory_mb,
            "test_accuracy": finished["test_accuracy"], "reading_line": reading[0].strip() if reading else ""}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="languages,topics,tweets")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scale-gb", type=float, default=0.0, help="only the scale rows, at a tenth of G and at G")
    parser.add_argument("--json", default="", metavar="DIR")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-texts-"))
    data_dir = str(scratch / "data")
    log = scratch / "runs.log"
    print(f"scratch folder {scratch} (runs' output: {log})", flush=True)
    if args.scale_gb:
        rows = harness.scale_rows(args.scale_gb, scratch, "languages", make_large,
                                  lambda path: scale_row(path, scratch, data_dir), "texts")
        harness.write_json(args.json, "texts-scale", harness.command("benchmarks.texts", argv), rows)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in args.sets.split(","):
        rows += run_set(name, seeds, scratch, data_dir, log)
        print(markdown({"rows": rows}), flush=True)
        harness.write_json(args.json, "texts", harness.command("benchmarks.texts", argv), rows)  # each set kept


def markdown(record: dict) -> str:
    rows = record["rows"]
    if "bytes" in rows[0]:  # texts-scale
        lines = ["| CSV | texts (train) | whole run: s (texts/s) | training: s (texts/s) | test accuracy "
                 "| peak RSS of the run | peak memory with the export check |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['bytes'] / 1e9:.2f} GB | {r['texts']:,} ({r['train_texts']:,}) | "
                         f"{r['wall_seconds']:.0f} ({r['texts_per_second_overall']:,.0f}) | "
                         f"{r['training_seconds']:.0f} ({r['train_texts_per_second']:,.0f}) | "
                         f"{r['test_accuracy']:.4f} | {r['peak_rss_mb']:,.0f} MB | "
                         f"{harness.megabytes(r.get('peak_memory_mb'))} |")
        return "\n".join(lines)
    lines = ["| set (train / test texts) | system | test accuracy | test macro-F1 | fit s |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} ({r['train_texts']:,} / {r['test_texts']:,}) | {r['system']} | "
                     f"{r['accuracy']:.4f} ± {r['accuracy_spread']:.4f} | {r['macro_f1']:.4f} ± "
                     f"{r['macro_f1_spread']:.4f} | {r['fit_seconds']:.1f} |")
    return "\n".join(lines) + "\n\n" + against(rows)


def against(rows: list) -> str:
    """The suite against each peer (and apps.sentiment) per set, in points of accuracy and of macro-F1."""
    others = [*PEERS, SENTIMENT]
    lines = ["| set | " + " | ".join(f"suite vs {o}: accuracy, macro-F1" for o in others) + " |",
             "|---" * (len(others) + 1) + "|"]
    for name in dict.fromkeys(r["set"] for r in rows):
        mine = {r["system"]: r for r in rows if r["set"] == name}
        cells = []
        for other in others:
            if other not in mine:
                cells.append("")
                continue
            # Rounded as printed: the app's figures are float32 counts, the peers' float64.
            gaps = [round(100 * (mine[SUITE][k] - mine[other][k]), 2) for k in ("accuracy", "macro_f1")]
            verdict = "ahead" if min(gaps) > 0 else "behind" if max(gaps) < 0 else "mixed"
            cells.append(f"{gaps[0]:+.2f}, {gaps[1]:+.2f} points ({verdict})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Text benchmark: sentiment models against TF-IDF + logistic regression, and the LSTM
language model against a bigram model, on the offline tweets' fixed split.

    pip install -r benchmarks/requirements.txt       # scikit-learn, for the peer
    python -m benchmarks.text                          # sentiment (bag, cnn) and lm
    python -m benchmarks.text --tasks sentiment --models bag

Every suite model trains through its app's own run function (apps.sentiment, apps.charlm:
pipeline, model, fit, evaluate, verified export into a scratch folder). The
peer sees the same cleaned, deduplicated tweets and the same split: it is fit
on train + validation (it has no use for a validation set) and scored on test.
The default model is trained twice: as the app trains it (train, validation
held out) and on the peer's data (--include-validation). The verdict on issue
15's target (2 points over the peer in accuracy and macro-F1) is worked out
from the rows.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from apps import charlm, sentiment  # noqa: E402
from pipelines import tweets  # noqa: E402
from training.config import default_data_dir, parse_config  # noqa: E402
from training.outputs import FINISHED, resolve_run_dir  # noqa: E402
from training.run import run  # noqa: E402


def suite(app, args: list[str], scratch: str) -> tuple[dict, float, float]:
    """(test results, wall seconds of the whole run, seconds in fit) of one run of the app."""
    # --publish always: every row exports into one scratch folder, and a row that scores below the one
    # before it is a figure to print, not a version to hold back.
    config = parse_config(app, [*args, "--data-source", "mirror", "--logdir", f"{scratch}/runs",
                                "--export-dir", f"{scratch}/export", "--fresh", "--publish", "always"])
    run_dir = resolve_run_dir(config)  # the folder run() picks: its FINISHED record has the fit time
    start = time.perf_counter()
    results = run(app, config)
    seconds = time.perf_counter() - start
    return results, seconds, json.loads((run_dir / FINISHED).read_text())["training_seconds"]


def peer() -> tuple[float, float]:
    """scikit-learn TF-IDF (word 1-2 grams, sublinear tf) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    corpus = tweets.load(default_data_dir())
    x_fit = np.concatenate([corpus["train"][0], corpus["validation"][0]])
    y_fit = np.concatenate([corpus["train"][1], corpus["validation"][1]])
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    model = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(x_fit), y_fit)
    predicted = model.predict(vectorizer.transform(corpus["test"][0]))
    y_test = corpus["test"][1]
    return float(accuracy_score(y_test, predicted)), float(f1_score(y_test, predicted, average="macro"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sentiment,lm")
    parser.add_argument("--models", default="bag,cnn", help="sentiment models to run")
    parser.add_argument("--no-same-data", action="store_true",
                        help="skip the default model's second run on train + validation (the peer's data)")
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        if "sentiment" in args.tasks:
            accuracy, f1 = peer()
            rows = [("TF-IDF 1-2 gram + logistic regression (peer)", accuracy, f1, None, None)]
            runs = [(m, []) for m in args.models.split(",")]
            if sentiment.DEFAULT_MODEL in args.models.split(",") and not args.no_same_data:
                runs.append((sentiment.DEFAULT_MODEL, ["--include-validation"]))
            for model, extra in runs:
                results, seconds, fit = suite(sentiment, ["--model", model, *extra], scratch)
                name = f"suite {model}" + (" (default)" if model == sentiment.DEFAULT_MODEL else "")
                rows.append((name + (", on train + validation" if extra else ""),
                             results["test_accuracy"], results["test_macro_f1"], fit, seconds))
            lines.append("Sentiment, offline tweets, stratified 80/20 split (RandomState 0), test set:")
            lines.append(f"{'model':58s} {'accuracy':>8s} {'macro-F1':>8s} {'fit s':>6s} {'run s':>6s}")
            lines += [f"{name:58s} {a:8.4f} {f:8.4f} {'' if t is None else f'{t:6.0f}':>6s} "
                      f"{'' if w is None else f'{w:6.0f}':>6s}" for name, a, f, t, w in rows]
            for name, a, f, _, _ in rows[1:]:
                if "(default)" in name:  # issue 15: 2 points over the peer in both
                    gains = (a - accuracy) * 100, (f - f1) * 100
                    lines.append(f"  {name}: {gains[0]:+.2f} accuracy, {gains[1]:+.2f} macro-F1 points over the "
                                 f"peer; 2 points in both: {'met' if min(gains) >= 2 else 'NOT met'}")
        if "lm" in args.tasks:
            results, seconds, _ = suite(charlm, [], scratch)
            lines.append("\nLanguage model, tweet texts, per-character test perplexity (same pairs):")
            lines.append(f"  suite lstm (S5)            {results['test_perplexity']:8.3f}   ({seconds:.0f} s)")
            lines.append(f"  add-k bigram (k={results['bigram_add_k']:g})      {results['bigram_test_perplexity']:8.3f}")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()

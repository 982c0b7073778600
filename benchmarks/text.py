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
held out) and on the peer's data (--include-validation). The verdict on the
target (2 points over the peer in accuracy and macro-F1) is worked out from
the rows. Every run goes through benchmarks/harness.py.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np

from apps import charlm, sentiment
from benchmarks import harness
from core.config import default_data_dir
from pipelines import tweets

PEER = "TF-IDF word 1-2 grams (sublinear) + logistic regression (peer, fit on train + validation)"
LABELS = {"bag": "`bag` (default: TF-IDF word 1-3 grams + character "
                 "1-6 grams within words, one hidden layer, 4 epochs)",
          "cnn": "`cnn` (keras.io's Conv1D)", "lstm": "`lstm` (characters through an LSTM)"}


def suite(app, args: list[str], scratch: str) -> harness.Result:
    """One run of the app through its own run function, export and LiteRT checks included (the "run s")."""
    return harness.run_app(app, args, scratch, quiet=False)


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


def verdict(rows: list[dict]) -> str:
    """Against the target of 2 points over the peer in accuracy and macro-F1."""
    peer_row = rows[0]
    lines = []
    for r in rows[1:]:
        if r.get("default") and not r.get("include_validation"):
            gains = [(r[k] - peer_row[k]) * 100 for k in ("accuracy", "macro_f1")]
            lines.append(f"The default against the peer: {gains[0]:+.2f} accuracy and {gains[1]:+.2f} macro-F1 points; "
                         f"2 points in both: accuracy {'met' if gains[0] >= 2 else 'NOT met'}, macro-F1 "
                         f"{'met' if gains[1] >= 2 else 'NOT met'}.")
    return "\n".join(lines)


def markdown(record: dict) -> str:
    """The table of a --json record (python -m benchmarks.results)."""
    rows = record["rows"]
    if record["benchmark"] == "text-lm":
        lines = ["| language model | test perplexity per character |", "|---|---|"]
        lines += [f"| {r['model']} | {r['perplexity']:.3f} |" for r in rows]
        return "\n".join(lines)

    def cell(value, digits=0):
        return value if isinstance(value, str) else "" if value is None else f"{value:.{digits}f}"

    lines = ["| model | test accuracy | test macro-F1 | fit s | run s |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {cell(r.get('fit_seconds'))} | "
              f"{cell(r.get('run_seconds'))} |" for r in rows]
    return "\n".join(lines) + "\n\n" + verdict(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sentiment,lm")
    parser.add_argument("--models", default="bag,cnn", help="sentiment models to run")
    parser.add_argument("--no-same-data", action="store_true",
                        help="skip the default model's second run on train + validation (the peer's data)")
    parser.add_argument("--json", metavar="DIR", help="also write the rows as DIR/text-sentiment.json and "
                        "DIR/text-lm.json (python -m benchmarks.results)")
    args = parser.parse_args(argv)
    command = harness.command("benchmarks.text", argv)
    with tempfile.TemporaryDirectory() as scratch:
        if "sentiment" in args.tasks:
            accuracy, f1 = peer()
            rows = [{"model": PEER, "accuracy": accuracy, "macro_f1": f1}]
            runs = [(m, []) for m in args.models.split(",")]
            if sentiment.DEFAULT_MODEL in args.models.split(",") and not args.no_same_data:
                runs.append((sentiment.DEFAULT_MODEL, ["--include-validation"]))
            for model, extra in runs:
                result = suite(sentiment, ["--model", model, *extra], scratch)
                label = LABELS.get(model, f"`{model}`")
                if extra:
                    label = f"`{model}`, trained on train + validation as the peer is (`--include-validation`)"
                rows.append({"model": label, "accuracy": result.results["test_accuracy"],
                             "macro_f1": result.results["test_macro_f1"], "fit_seconds": result.training_seconds,
                             "run_seconds": result.seconds, "default": model == sentiment.DEFAULT_MODEL,
                             "include_validation": bool(extra)})
            print("\nSentiment, offline tweets, stratified 80/20 split (RandomState 0), test set:\n")
            print(markdown({"benchmark": "text-sentiment", "rows": rows}))
            harness.write_json(args.json, "text-sentiment", command, rows)
        if "lm" in args.tasks:
            result = suite(charlm, [], scratch)
            rows = [{"model": f"`apps.charlm` (S5: Embedding 32 -> LSTM 128 -> Dense, 4 epochs; {result.seconds:.0f} "
                              "s)", "perplexity": result.results["test_perplexity"]},
                    {"model": f"add-k bigram on the same pairs (k = {result.results['bigram_add_k']:g}, chosen on "
                              "validation)", "perplexity": result.results["bigram_test_perplexity"]}]
            print("\nLanguage model, tweet texts, per-character test perplexity (same pairs):\n")
            print(markdown({"benchmark": "text-lm", "rows": rows}))
            harness.write_json(args.json, "text-lm", command, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Transfer benchmark: does starting from a trained model beat starting from scratch when labels are few?

    python -m benchmarks.transfer                          # images, both directions, then text
    python -m benchmarks.transfer --part images --labels 100,600 --seeds 0
    python -m benchmarks.transfer --part text

Images: the default model trained on all of MNIST starts Fashion-MNIST, and
the reverse. For each labelled-set size (--train-examples, a random subset
by seed) and seed, the same model is trained from scratch for E epochs, and
from the other data set's model, by default in the keras.io guide's two
phases: E/3 epochs with the loaded layers frozen (only the new output layer
learns), then 2E/3 epochs of everything but batch norm at a tenth of the
rate; with --image-recipe whole, the loaded weights only replace the random
start of the scratch recipe. Same data, same step count, same test set (all
10,000 test images).

Text (ULMFiT-style): the character language model (apps.charlm) trained on
the tweets' training texts, labels unused, starts the character sentiment
classifier (apps.sentiment --model lstm): its embedding and LSTM are loaded
and fine-tuned with the new output layer; against the same classifier from
scratch, at 1,000 labels and at all labels (--text-recipe two-phase: frozen first, as for images).

Every run goes through the apps' own run function (pipeline, fit, evaluate,
verified export into a scratch folder). Source models come from one run each
(seed 42) and are reused; the figures are test accuracies, mean of the seeds.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from apps import charlm, fashion_mnist, mnist, sentiment
from benchmarks import harness

# labels: (batch size, epochs, how many of --seeds). Small sets get small batches and
# more epochs, so every run takes a few hundred steps. 0 labels: all of them, with one
# seed (a character LSTM epoch over all (about 26,800) training tweets takes minutes here).
IMAGE_PLAN = {100: (32, 39, 3), 600: (32, 24, 3), 6000: (128, 12, 3)}
TEXT_PLAN = {1000: (32, 12, 3), 0: (64, 3, 1)}


class Bench:
    def __init__(self, workdir: str, log: Path):
        self.workdir, self.log = workdir, log

    def source(self, app, argv: list[str], name: str) -> dict:
        """A model every comparison starts from: trained once as WORKDIR/runs/<app>/<name>, reused if finished there."""
        return self.run(app, [*argv, "--run-id", name], fresh=False)

    def run(self, app, argv: list[str], fresh: bool = True) -> dict:
        """One run of the app (benchmarks/harness.py; its output into the log): its results, and where its model is.

        Without LiteRT files and pictures (harness.QUIET): they are not what this benchmark compares, and a
        100-label run took 161-193 s with them, 59-67 s without (the SavedModel export is still verified).
        """
        result = harness.run_app(app, argv, self.workdir, fresh=fresh, log=self.log)
        results = {**result.results, "seconds": result.training_seconds if not fresh else result.seconds,
                   "model": str(result.run_dir / "model.keras")}
        print(f"  {app.NAME:13s} {' '.join(argv)[:90]:90s} "
              f"test_accuracy={results['test_accuracy']:.4f} ({result.seconds:.0f} s)", flush=True)
        return results


def compare(bench: Bench, app, plan: dict, seeds: list[int], source: str, extra: list[str], frozen_first: bool):
    """Rows of (labels, scratch accuracies, transfer accuracies) for one target app."""
    rows = []
    for labels, (batch, epochs, runs) in plan.items():
        common = [*extra, "--batch-size", str(batch), *(["--train-examples", str(labels)] if labels else [])]
        if frozen_first:
            transfer_flags = ["--init-from", source, "--freeze", "--epochs", str(epochs // 3),
                              "--fine-tune-epochs", str(epochs - epochs // 3)]
        else:
            transfer_flags = ["--init-from", source, "--epochs", str(epochs)]
        scratch, transfer = [], []
        for seed in seeds[:runs]:
            seeded = [*common, "--seed", str(seed)]
            scratch.append(bench.run(app, [*seeded, "--epochs", str(epochs)])["test_accuracy"])
            transfer.append(bench.run(app, [*seeded, *transfer_flags])["test_accuracy"])
        rows.append((labels, scratch, transfer))
    return rows


def mean_std(values) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * spread:.2f}"


def gain(scratch, transfer) -> float:
    return 100 * (statistics.mean(transfer) - statistics.mean(scratch))


def markdown(record: dict) -> str:
    """The tables of a --json record (python -m benchmarks.results)."""
    rows = record["rows"]
    if record["benchmark"].startswith("transfer-text"):
        lines = ["| labelled tweets | from scratch | from the LM | gain | per seed (scratch / transfer) |",
                 "|---|---|---|---|---|"]
        for r in rows["labels"]:
            seeds = ", ".join(f"{100 * a:.1f}/{100 * b:.1f}" for a, b in zip(r["scratch"], r["transfer"]))
            lines.append(f"| {r['labels'] or 'all (about 26,800)'} | {mean_std(r['scratch'])} | "
                         f"{mean_std(r['transfer'])} | {gain(r['scratch'], r['transfer']):+.2f} | {seeds} |")
        return "\n".join(lines) + f"\n\nThe character LM: test perplexity {rows['lm_perplexity']:.3f}."
    lines = ["| labels | Fashion-MNIST from scratch | from the MNIST model | "
             "gain | MNIST from scratch | from the Fashion-MNIST model | gain |", "|---|---|---|---|---|---|---|"]
    for r in rows["labels"]:
        cells = []
        for target in ("fashion_mnist", "mnist"):
            pair = r.get(target)
            cells += ([mean_std(pair["scratch"]), mean_std(pair["transfer"]),
                       f"{gain(pair['scratch'], pair['transfer']):+.2f}"] if pair else ["", "", ""])
        lines.append(f"| {r['labels']} | " + " | ".join(cells) + " |")
    sources = rows.get("sources")
    if sources:
        lines += ["", "| all 55,000 training labels, seed 42 | test accuracy | training time |", "|---|---|---|"]
        lines += [f"| {s['model']} | {100 * s['test_accuracy']:.2f} % | {s['seconds']:.0f} s |" for s in sources]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "images", "text"), default="all")
    parser.add_argument("--labels", default="", help="image label counts (default: 100,600,6000)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--text-recipe", choices=("two-phase", "whole"), default="whole")
    parser.add_argument("--text-labels", default="", help="text label counts (default: 1000 and all, 0)")
    parser.add_argument("--image-recipe", choices=("two-phase", "whole"), default="two-phase",
                        help="two-phase: freeze E/3 epochs, fine-tune 2E/3; whole: the loaded weights only start the "
                             "scratch recipe (every layer trains E epochs on its schedule)")
    parser.add_argument("--log", default="transfer-benchmark.log", help="every run's own output goes here")
    parser.add_argument("--workdir", default="", help="keep the runs here, and reuse the source models finished there "
                                                      "by an earlier run (default: a temporary folder)")
    parser.add_argument("--json", metavar="DIR", help="also write the rows as DIR/transfer-images.json and "
                        "DIR/transfer-text.json (python -m benchmarks.results)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = {n: IMAGE_PLAN[n] for n in map(int, args.labels.split(","))} if args.labels else IMAGE_PLAN
    command = harness.command("benchmarks.transfer", argv)
    with tempfile.TemporaryDirectory() as scratch:
        bench = Bench(args.workdir or scratch, Path(args.log))
        print(f"each run's output: {args.log}", flush=True)
        if args.part in ("all", "images"):
            sources = {app.NAME: bench.source(app, [], "source") for app in (mnist, fashion_mnist)}  # default models
            convnet = bench.source(fashion_mnist, ["--model", "convnet"], "convnet")
            two_phase = args.image_recipe == "two-phase"
            by_labels = {labels: {"labels": labels} for labels in plan}
            for target, source in ((fashion_mnist, "mnist"), (mnist, "fashion_mnist")):
                for labels, scratch_runs, transfer_runs in compare(bench, target, plan, seeds, sources[source]["model"],
                                                                   [], frozen_first=two_phase):
                    by_labels[labels][target.NAME] = {"scratch": scratch_runs, "transfer": transfer_runs}
            rows = {"labels": list(by_labels.values()), "recipe": args.image_recipe, "sources": [
                {"model": f"`cnn_bn` (default, {fashion_mnist.MODELS['cnn_bn'].epochs} epochs)",
                 "test_accuracy": sources["fashion_mnist"]["test_accuracy"],
                 "seconds": sources["fashion_mnist"]["seconds"]},
                {"model": "`convnet` (keras.io's simple MNIST convnet as that example trains it: 15 epochs, batch 128)",
                 "test_accuracy": convnet["test_accuracy"], "seconds": convnet["seconds"]}]}
            print("\n" + markdown({"benchmark": "transfer-images", "rows": rows}), flush=True)
            harness.write_json(args.json, "transfer-images", command, rows)
        if args.part in ("all", "text"):
            lm = bench.source(charlm, [], "source")
            labels = [int(n) for n in args.text_labels.split(",")] if args.text_labels else list(TEXT_PLAN)
            text_plan = {n: TEXT_PLAN[n] for n in labels}
            rows = {"labels": [{"labels": labels, "scratch": s, "transfer": t} for labels, s, t in compare(
                bench, sentiment, text_plan, seeds, lm["model"], ["--model", "lstm"],
                frozen_first=args.text_recipe == "two-phase")], "recipe": args.text_recipe,
                "lm_perplexity": lm["test_perplexity"]}
            print("\n" + markdown({"benchmark": "transfer-text", "rows": rows}), flush=True)
            harness.write_json(args.json, "transfer-text", command, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from apps import charlm, fashion_mnist, mnist, sentiment  # noqa: E402
from training.config import parse_config  # noqa: E402
from training.outputs import FINISHED, resolve_run_dir  # noqa: E402
from training.run import run  # noqa: E402

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
        finished = Path(self.workdir) / "runs" / app.NAME / name / FINISHED
        if not finished.exists():
            return self.run(app, [*argv, "--run-id", name])
        results = json.loads(finished.read_text())
        print(f"  {app.NAME:13s} {name}: reusing {finished.parent} (test_accuracy={results['test_accuracy']:.4f})")
        return {**results, **results.get("details", {}), "seconds": results["training_seconds"],
                "model": str(finished.parent / "model.keras")}

    def run(self, app, argv: list[str]) -> dict:
        """One run of the app, its output into the log; returns its results and where its model is."""
        fresh = [] if "--run-id" in argv else ["--fresh"]
        # --publish always: every run exports into one scratch folder, and a run that scores below the
        # one before it (a scratch run after its source model) is a figure to report, not a version to hold back.
        # --litert none --pictures none: the phone files and pictures are not what this benchmark compares,
        # and a 100-label run took 161-193 s with them, 59-67 s without (the SavedModel export is still verified).
        config = parse_config(app, [*argv, "--data-source", "mirror", *fresh, "--logdir", f"{self.workdir}/runs",
                                    "--export-dir", f"{self.workdir}/export", "--publish", "always",
                                    "--litert", "none", "--pictures", "none"])
        run_dir = resolve_run_dir(config)  # the folder run() picks, so its model.keras
        started = time.perf_counter()
        with open(self.log, "a") as out, contextlib.redirect_stdout(out):
            print(f"\n==== {app.NAME} {' '.join(argv)}", flush=True)
            results = run(app, config)
        results.update(seconds=time.perf_counter() - started, model=str(run_dir / "model.keras"))
        print(f"  {app.NAME:13s} {' '.join(argv)[:90]:90s} test_accuracy={results['test_accuracy']:.4f} "
              f"({results['seconds']:.0f} s)", flush=True)
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


def table(title: str, rows) -> str:
    def cell(values):
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):6.2f} ± {100 * spread:4.2f}"

    lines = [title, f"{'labels':>8s}  {'scratch %':>14s}  {'transfer %':>14s}  {'gain':>6s}  per seed (scratch / transfer)",
             "-" * 100]
    for labels, scratch, transfer in rows:
        gain = 100 * (statistics.mean(transfer) - statistics.mean(scratch))
        seeds = "  ".join(f"{100 * s:.1f}/{100 * t:.1f}" for s, t in zip(scratch, transfer))
        lines.append(f"{labels or 'all':>8}  {cell(scratch)}  {cell(transfer)}  {gain:+6.2f}  {seeds}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "images", "text"), default="all")
    parser.add_argument("--labels", default="", help="image label counts (default: 100,600,6000)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--text-recipe", choices=("two-phase", "whole"), default="whole")
    parser.add_argument("--text-labels", default="", help="text label counts (default: 1000 and all, 0)")
    parser.add_argument("--image-recipe", choices=("two-phase", "whole"), default="two-phase",
                        help="two-phase: freeze E/3 epochs, fine-tune 2E/3; whole: the loaded weights only start "
                             "the scratch recipe (every layer trains E epochs on its schedule)")
    parser.add_argument("--log", default="transfer-benchmark.log", help="every run's own output goes here")
    parser.add_argument("--workdir", default="", help="keep the runs here, and reuse the source models finished "
                                                      "there by an earlier run (default: a temporary folder)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = {n: IMAGE_PLAN[n] for n in map(int, args.labels.split(","))} if args.labels else IMAGE_PLAN
    out = []
    with tempfile.TemporaryDirectory() as scratch:
        bench = Bench(args.workdir or scratch, Path(args.log))
        print(f"each run's output: {args.log}", flush=True)
        if args.part in ("all", "images"):
            sources = {app.NAME: bench.source(app, [], "source") for app in (mnist, fashion_mnist)}  # default models
            convnet = bench.source(fashion_mnist, ["--model", "convnet"], "convnet")
            out.append("Fashion-MNIST, all 55,000 training labels, test accuracy (seed 42, one run each):\n"
                       f"  default cnn_bn ({fashion_mnist.MODELS['cnn_bn'].epochs} epochs) "
                       f"{100 * sources['fashion_mnist']['test_accuracy']:.2f} %  "
                       f"({sources['fashion_mnist']['seconds']:.0f} s)\n"
                       f"  keras.io convnet (15 epochs, batch 128, Adam) {100 * convnet['test_accuracy']:.2f} %  "
                       f"({convnet['seconds']:.0f} s)\n"
                       f"  (MNIST default: {100 * sources['mnist']['test_accuracy']:.2f} %)")
            two_phase = args.image_recipe == "two-phase"
            recipe = "freeze E/3, fine-tune 2E/3" if two_phase else "every layer E epochs from the loaded weights"
            for target, source in ((fashion_mnist, "mnist"), (mnist, "fashion_mnist")):
                rows = compare(bench, target, plan, seeds, sources[source]["model"], [], frozen_first=two_phase)
                out.append(table(f"\n{target.NAME} from {source}'s default model ({recipe}) "
                                 f"vs from scratch (E epochs), test accuracy, mean ± std over seeds {args.seeds}:", rows))
                print(out[-1], flush=True)
        if args.part in ("all", "text"):
            lm = bench.source(charlm, [], "source")
            out.append(f"\ncharacter LM on the tweets' training texts: test perplexity {lm['test_perplexity']:.3f} "
                       f"({lm['seconds']:.0f} s)")
            text_plan = {n: TEXT_PLAN[n] for n in map(int, args.text_labels.split(","))} if args.text_labels else TEXT_PLAN
            two_phase = args.text_recipe == "two-phase"
            rows = compare(bench, sentiment, text_plan, seeds, lm["model"], ["--model", "lstm"], frozen_first=two_phase)
            recipe = "freeze E/3, fine-tune 2E/3" if two_phase else "every layer E epochs from the loaded weights"
            out.append(table(f"sentiment --model lstm from the LM's embedding + LSTM ({recipe}) vs from scratch, "
                             f"test accuracy, mean ± std over seeds {args.seeds}:", rows))
            print(out[-1], flush=True)
    print("\n" + "\n".join(out))


if __name__ == "__main__":
    main()

"""Mixed precision and XLA on this machine: every app as GPU and TPU users get it by default.

    python -m benchmarks.precision                  # the check: every app, every precision (~6 min, 2 cores)
    python -m benchmarks.precision --part mnist     # the MNIST default in float32, float16 and bfloat16, side by side
    python -m benchmarks.precision -- --strategy mirrored    # flags after -- go to every run

The check is the first command to run on a new GPU or TPU machine. Every app
trains a smoke run under --mixed-precision auto (what this machine picks:
float16 on a GPU of compute capability 7.0 or more, bfloat16 on a TPU, float32
elsewhere), float16 and bfloat16, with --xla auto (Keras compiles with XLA on
one GPU), each in a process of its own, through the export check (both
loaders at the precision's tolerance), the LiteRT files (from the float32
copy) and TensorBoard's pictures; one row each: the precision and XLA it
really ran with, the median step time, the test metric, how far the loaders
and the float32 copy were from the trained model, and how many LiteRT files
were kept. A row that fails says why and the check goes on; it exits 1 if any did.

The MNIST part trains the default model in full under each precision, one after
the other in one run: test accuracy, training time and median step time, and
the accuracy of each LiteRT file of each model. On a CPU the times say nothing
about a GPU.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time

from benchmarks import harness, tables

APPS = {"mnist": [], "fashion_mnist": [], "regression": [], "sentiment": [], "charlm": ["--sequence-length", "48"],
        "tabular": ["--data", str(tables.penguins()), "--target", "species"]}
PRECISIONS = ("auto", "float16", "bfloat16")


def described(stdout: str) -> tuple[str, str, str]:
    """(strategy, precision, XLA) as the run's own first lines said them."""
    header = re.search(r"over (\d+) replica\(s\) \((.*?)\), precision (\S+)", stdout)
    strategy = f"{header.group(2)}, {header.group(1)} replica(s)" if header else "?"
    xla = "on" if "XLA: the train step is compiled with XLA" in stdout else "off"
    xla += " (string ops)" if "this model trains without XLA" in stdout else ""
    return strategy, (header.group(3).removeprefix("mixed_") if header else "?"), xla


def check(passthrough: list[str], scratch: str) -> list[dict]:
    rows = []
    for app, flags in APPS.items():
        for asked in PRECISIONS:
            row = {"app": app, "asked": asked}
            try:
                result = harness.run_app(app, ["--smoke", "--mixed-precision", asked, *flags, *passthrough],
                                         f"{scratch}/{app}-{asked}", quiet=False, process=True, timeout=3600)
            except RuntimeError as err:
                row["result"] = str(err).splitlines()[-1][:200]
                rows.append(row)
                print(f"  {app} {asked}: FAILED {row['result']}", flush=True)
                continue
            evaluation = result.evaluation
            metric, _ = evaluation["metric"]
            litert = evaluation.get("litert", {})
            strategy, precision, xla = described(result.stdout)
            row.update(strategy=strategy, precision=precision, xla=xla, step_ms=result.step_seconds(skip=1) * 1e3,
                       metric=metric, score=evaluation["savedmodel"]["score"],
                       loaders=max(evaluation["loaders"]["max_difference"].values(), default=0.0),
                       tolerance=evaluation["loaders"]["tolerance"],
                       float32_copy=evaluation.get("float32_copy", {}).get("max_difference"),
                       litert_kept=sum(e.get("kept", False) for e in litert.values()), litert_made=len(litert),
                       result="ok")
            rows.append(row)
            print(f"  {app} {asked}: {precision}, XLA {xla}, "
                  f"{row['step_ms']:.0f} ms a step, {metric} {row['score']:.4f}",
                  flush=True)
    return rows


def check_table(rows: list[dict]) -> str:
    lines = ["| app | asked | ran in | XLA | strategy | step ms (median) | test metric | loaders: largest difference "
             "(tolerance) | float32 copy: largest difference | LiteRT files kept | result |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["result"] != "ok":
            lines.append(f"| {r['app']} | {r['asked']} | | | | | | | | | **{r['result']}** |")
            continue
        tolerance = f"{r['tolerance']['relative']:g} rel + {r['tolerance']['absolute']:g}"
        copy = "-" if r["float32_copy"] is None else f"{r['float32_copy']:.2g}"
        lines.append(f"| {r['app']} | {r['asked']} | {r['precision']} | {r['xla']} | {r['strategy']} | "
                     f"{r['step_ms']:.0f} | {r['metric']} {r['score']:.4f} | {r['loaders']:.2g} ({tolerance}) | {copy} "
                     f"| {r['litert_kept']} of {r['litert_made']} | ok |")
    return "\n".join(lines)


def mnist(passthrough: list[str], scratch: str, seed: int) -> list[dict]:
    rows = []
    for precision in ("off", "float16", "bfloat16"):
        print(f"  MNIST default, --mixed-precision {precision} ...", flush=True)
        result = harness.run_app("mnist", ["--mixed-precision", precision, "--seed", str(seed), "--pictures", "none",
                                           *passthrough], f"{scratch}/mnist-{precision}", quiet=False, process=True)
        evaluation = result.evaluation
        rows.append({"precision": "float32" if precision == "off" else precision, "seed": seed,
                     "test_accuracy": result.results["test_accuracy"], "training_seconds": result.training_seconds,
                     "step_ms": result.step_seconds() * 1e3, "steps": len(result.steps()),
                     "float32_copy": evaluation.get("float32_copy", {}).get("score"),
                     "litert": {v: e.get("score") for v, e in evaluation.get("litert", {}).items()},
                     "litert_kept": [v for v, e in evaluation.get("litert", {}).items() if e.get("kept")]})
        print(f"    test accuracy {rows[-1]['test_accuracy']:.4f}, {rows[-1]['training_seconds']:.0f} s training, "
              f"{rows[-1]['step_ms']:.0f} ms a step", flush=True)
    return rows


def mnist_table(rows: list[dict]) -> str:
    variants = ("float32", "dynamic_range", "float16", "int8")
    lines = ["| trained in | test accuracy (SavedModel) | training s | median step ms | steps | "
             + " | ".join(f"LiteRT {v}" for v in variants) + " |", "|---" * (5 + len(variants)) + "|"]
    for r in rows:
        cells = [(f"{r['litert'][v]:.2%}" + ("" if v in r["litert_kept"] else " (not kept)"))
                 if r["litert"].get(v) is not None
                 else "-" for v in variants]
        lines.append(f"| {r['precision']} | {r['test_accuracy']:.2%} | {r['training_seconds']:.0f} | "
                     f"{r['step_ms']:.0f} | {r['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(record: dict) -> str:
    """The table of a --json record (python -m benchmarks.results)."""
    return (check_table if record["benchmark"] == "precision-check" else mnist_table)(record["rows"])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("check", "mnist"), default="check")
    parser.add_argument("--seed", type=int, default=42, help="--part mnist: the seed of every row")
    parser.add_argument("--json", metavar="DIR", help="also write the rows as DIR/precision-PART.json "
                        "(python -m benchmarks.results)")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as scratch:
        if args.part == "check":
            rows = check(passthrough, scratch)
            table = check_table(rows)
        else:
            rows = mnist(passthrough, scratch, args.seed)
            table = mnist_table(rows)
    print("\n" + table + f"\n\nwhole benchmark: {time.perf_counter() - started:.0f} s wall")
    harness.write_json(args.json, f"precision-{args.part}", harness.command("benchmarks.precision", argv), rows)
    return 1 if any(r.get("result", "ok") != "ok" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())

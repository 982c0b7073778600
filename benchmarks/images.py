"""Your own pictures: apps.image_classifier on Fashion-MNIST written as PNG files, against the same data in memory.

    python -m benchmarks.images                  # 3 seeds: the folder, apps.fashion_mnist, keras.io's recipe
    python -m benchmarks.images --seeds 0 --json docs/results
    python -m benchmarks.images --first-pass     # only the first pass: one process, then two workers

Rows, side by side in one run and per seed:
  - folder: `python -m apps.image_classifier --data DIR` on the 70,000 PNG files
    (benchmarks/image_folders.py: the same 55,000 / 5,000 / 10,000 split as the app
    below), in a process of its own, so its peak memory is its own;
  - memory: `python -m apps.fashion_mnist`, the same pictures from arrays in memory;
  - keras.io: the "Image classification from scratch" recipe (a small Xception:
    entry convolution, three separable-convolution blocks with residuals, global
    pooling; flips and rotations; Adam 3e-4, batch 128; its 25 epochs) rebuilt
    here at the pictures' 28 x 28, reading the same folder with
    keras.utils.image_dataset_from_directory. It stops at the end of the first
    epoch past the folder row's wall time (--recipe-epochs 25 --no-budget runs
    it all): "ahead at no more wall time" compares there.
Also: the first pass over the 70,000 files (seconds, files/s), and the served
signature's latency for base64 pictures at batch 1 and 64. --first-pass: the
first pass alone, by one process and by two workers of a cluster, sharing a
DATA_DIR (a part each) and each with its own (each does it all).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import harness, image_folders


def folder_row(folder: Path, seed: int, scratch: Path, log: Path) -> dict:
    data_dir = scratch / f"data-{seed}"  # a fresh cache: the first pass is part of the run
    started = time.perf_counter()
    result = harness.run_app("image_classifier", ["--data", str(folder), "--seed", str(seed), "--data-dir",
                                                  str(data_dir)], scratch, process=True, log=log)
    lines = result.stdout.splitlines()
    return {"system": "folder", "seed": seed, "test_accuracy": result.results["test_accuracy"],
            "wall_seconds": time.perf_counter() - started, "training_seconds": result.training_seconds,
            "steps_per_second": 1 / result.step_seconds(), "export": str(result.export),
            "peak_rss_mb": result.peak_rss_mb,
            "decoding_line": next((line for line in lines if "decoded pictures cached" in line), "").strip()}


def memory_row(seed: int, scratch: Path, log: Path) -> dict:
    started = time.perf_counter()
    result = harness.run_app("fashion_mnist", ["--seed", str(seed)], scratch, process=True, log=log)
    return {"system": "memory", "seed": seed, "test_accuracy": result.results["test_accuracy"],
            "wall_seconds": time.perf_counter() - started, "training_seconds": result.training_seconds,
            "steps_per_second": 1 / result.step_seconds()}


def first_pass(folder: Path, scratch: Path, workers: int = 1, shared: bool = True) -> dict:
    """The folder's first pass alone (headers, then every file decoded once into the cache), in a fresh cache:
    one process, or `workers` processes as a multi_worker cluster's would run it (TF_CONFIG names them; the
    pass itself contacts nobody), sharing one DATA_DIR (shared) or each with its own."""
    import json
    import os
    import subprocess
    import sys

    run = scratch / f"first-pass-{workers}{'-shared' if shared else ''}"  # a fresh cache
    cluster = {"worker": [f"127.0.0.1:{port}" for port in range(1, workers + 1)]}
    started = time.perf_counter()
    processes = [subprocess.Popen(
        [sys.executable, "-m", "benchmarks.images", "--first-pass-of", str(folder),
         str(run / ("data" if shared else f"data-{k}")), "multi_worker" if workers > 1 else "auto"],
        cwd=harness.ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": k}})})
        for k in range(workers)]
    outputs = [p.communicate()[0] for p in processes]
    seconds = time.perf_counter() - started
    if any(p.returncode for p in processes):
        raise RuntimeError("a first pass failed:\n" + "\n".join(outputs))
    ends = [json.loads(out.splitlines()[-1]) for out in outputs]
    return {"system": "first pass", "workers": workers, "shared_data_dir": shared, "files": ends[0]["files"],
            "seconds": seconds, "files_per_second": ends[0]["files"] / seconds,
            "cpu_seconds": [end["cpu_seconds"] for end in ends],
            "parts_done_here": [out.count("is done here") for out in outputs] if workers > 1 else []}


def _first_pass_of(folder: str, data_dir: str, strategy: str) -> None:
    """first_pass's process: prepare() as an app's check_config runs it; the file count as JSON, last."""
    import json
    import resource
    from types import SimpleNamespace

    from apps import image_folder

    config = SimpleNamespace(options={"data": folder, "image_size": 0, "channels": 0, "cache": "auto",
                                      "split_fractions": "0.15,0.15"},
                             data_dir=data_dir, seed=0, smoke=False, strategy=strategy)
    prepared = image_folder.prepare(config, print_=print)
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]  # + its check
    print(json.dumps({"files": len(prepared.paths) + len(prepared.skipped),
                      "cpu_seconds": sum(u.ru_utime + u.ru_stime for u in used)}), flush=True)


def recipe_model(shape, classes: int):
    """keras.io "Image classification from scratch", its make_model, for `classes` classes."""
    import keras
    from keras import layers

    inputs = keras.Input(shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(128, 3, strides=2, padding="same")(x)
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    previous = x
    for size in (256, 512, 728):
        x = layers.Activation("relu")(x)
        x = layers.BatchNormalization()(layers.SeparableConv2D(size, 3, padding="same")(x))
        x = layers.Activation("relu")(x)
        x = layers.BatchNormalization()(layers.SeparableConv2D(size, 3, padding="same")(x))
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.add([x, layers.Conv2D(size, 1, strides=2, padding="same")(previous)])
        previous = x
    x = layers.Activation("relu")(layers.BatchNormalization()(layers.SeparableConv2D(1024, 3, padding="same")(x)))
    x = layers.Dropout(0.25)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, layers.Dense(classes)(x))


def recipe_row(folder: Path, seed: int, epochs: int, budget: float | None) -> dict:
    """The recipe on the folder's train/ (validation/ to watch, test/ scored), until `budget` seconds pass."""
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(seed)
    read = dict(image_size=(28, 28), color_mode="grayscale", batch_size=128, seed=seed)
    train, validation, test = (keras.utils.image_dataset_from_directory(folder / part, shuffle=part == "train", **read)
                               for part in ("train", "validation", "test"))
    augmentation = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation(0.1)])
    train = train.map(lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    train, validation, test = (d.prefetch(tf.data.AUTOTUNE) for d in (train, validation, test))
    model = recipe_model((28, 28, 1), 10)
    model.compile(optimizer=keras.optimizers.Adam(3e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    started, done = time.perf_counter(), 0
    for epoch in range(epochs):
        model.fit(train, validation_data=validation, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
        done = epoch + 1
        if budget and time.perf_counter() - started > budget:
            break
    seconds = time.perf_counter() - started
    accuracy = model.evaluate(test, return_dict=True, verbose=0)["accuracy"]
    return {"system": "keras.io recipe", "seed": seed, "test_accuracy": float(accuracy), "wall_seconds": seconds,
            "epochs": done}


def serving_latency(export: str, pictures: list) -> dict:
    """Median milliseconds of serving_default on PNG files' bytes (what a base64 request decodes to), batch 1
    and 64 (tf.saved_model.load)."""
    import tensorflow as tf

    fn = tf.saved_model.load(export).signatures["serving_default"]
    out = {}
    for batch in (1, 64):
        data = tf.constant([p.read_bytes() for p in pictures[:batch]])
        fn(image_bytes=data)  # trace, warm up
        times = []
        for _ in range(30):
            start = time.perf_counter()
            fn(image_bytes=data)
            times.append(time.perf_counter() - start)
        out[f"batch_{batch}_ms"] = 1000 * statistics.median(times)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--folder", default="", help="where the PNG folder is written (default: the scratch folder)")
    parser.add_argument("--recipe-epochs", type=int, default=25)
    parser.add_argument("--no-budget", action="store_true", help="the recipe trains all its epochs")
    parser.add_argument("--json", default="", metavar="DIR")
    parser.add_argument("--first-pass", action="store_true",
                        help="only the first pass: one process, two workers sharing DATA_DIR, two each with its own")
    parser.add_argument("--first-pass-of", nargs=3, metavar=("FOLDER", "DATA_DIR", "STRATEGY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.first_pass_of:
        return _first_pass_of(*args.first_pass_of)
    scratch = Path(tempfile.mkdtemp(prefix="bench-images-"))
    log = scratch / "runs.log"
    print(f"scratch folder {scratch} (runs' output: {log})", flush=True)
    folder = image_folders.fashion_folder(Path(args.folder) if args.folder else scratch / "fashion-png")
    rows = [first_pass(folder, scratch)]
    print(rows[-1], flush=True)
    if args.first_pass:  # as many times as there are seeds, side by side: the table gives medians
        for repeat in range(len(args.seeds.split(","))):
            for workers, shared in ((1, True), (2, True), (2, False))[1 if repeat == 0 else 0:]:
                rows.append(first_pass(folder, scratch / f"repeat-{repeat}", workers=workers, shared=shared))
                print(rows[-1], flush=True)
        print(markdown({"rows": rows}))
        harness.write_json(args.json, "images-first-pass", harness.command("benchmarks.images", argv), rows)
        return
    for seed in (int(s) for s in args.seeds.split(",")):
        rows.append(folder_row(folder, seed, scratch, log))
        print(rows[-1], flush=True)
        rows.append(memory_row(seed, scratch, log))
        print(rows[-1], flush=True)
        rows.append(recipe_row(folder, seed, args.recipe_epochs, None if args.no_budget else rows[-2]["wall_seconds"]))
        print(rows[-1], flush=True)
    export = next(r["export"] for r in rows if r["system"] == "folder")
    rows.append({"system": "serving", **serving_latency(export, sorted((folder / "test").rglob("*.png"))[:64])})
    print(rows[-1], flush=True)
    print(markdown({"rows": rows}))
    harness.write_json(args.json, "images", harness.command("benchmarks.images", argv), rows)


def markdown(record: dict) -> str:
    rows = record["rows"]
    lines = ["| system | test accuracy (mean ± spread) | steps/s (median step) | wall seconds | note |",
             "|---|---|---|---|---|"]
    for system in ("folder", "memory", "keras.io recipe"):
        mine = [r for r in rows if r["system"] == system]
        if not mine:
            continue
        accuracy = [r["test_accuracy"] for r in mine]
        spread = (max(accuracy) - min(accuracy)) / 2
        speed = (f"{statistics.median(r['steps_per_second'] for r in mine):.1f}" if "steps_per_second" in mine[0]
                 else "")
        peaks = [r["peak_rss_mb"] for r in mine if r.get("peak_rss_mb")]
        note = (f"peak RSS {max(peaks):,.0f} MB" if system == "folder" and peaks else
                f"{', '.join(str(r['epochs']) for r in mine)} epoch(s)" if system == "keras.io recipe" else "")
        lines.append(f"| {system} | {np.mean(accuracy):.4f} ± {spread:.4f} | {speed} | "
                     f"{statistics.median(r['wall_seconds'] for r in mine):.0f} | {note} |")
    first = next((r for r in rows if r["system"] == "first pass"), None)
    served = next((r for r in rows if r["system"] == "serving"), None)
    if all(r["system"] == "first pass" for r in rows):  # images-first-pass
        lines = ["| first pass | processes | wall seconds | files/s | CPU seconds of each | parts each did |",
                 "|---|---|---|---|---|---|"]
        for how, workers, shared in (("one process", 1, True), ("two workers, one DATA_DIR", 2, True),
                                     ("two workers, each its own DATA_DIR", 2, False)):
            mine = [r for r in rows if r["workers"] == workers and r["shared_data_dir"] == shared]
            seconds = statistics.median(r["seconds"] for r in mine)
            cpu = [statistics.median(r["cpu_seconds"][k] for r in mine) for k in range(workers)]
            lines.append(f"| {mine[0]['files']:,} files | {how} | {seconds:.1f} | {mine[0]['files'] / seconds:,.0f} | "
                         f"{' / '.join(f'{c:.1f}' for c in cpu)} | "
                         f"{' / '.join(str(n) for n in mine[0]['parts_done_here']) or 'all'} |")
        lines.append(f"\nMedians of {len(mine)} runs each, in turn.")
        return "\n".join(lines)
    if first:
        lines.append(f"\nFirst pass: {first['files']:,} files in {first['seconds']:.1f} s "
                     f"({first['files_per_second']:,.0f} files/s).")
    if served:
        lines.append(f"Served base64 PNGs (serving_default): batch 1 {served['batch_1_ms']:.1f} ms, batch 64 "
                     f"{served['batch_64_ms']:.1f} ms (medians of 30).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

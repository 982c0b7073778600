"""A user's folder of pictures as the suite's splits: found, checked once, split, fed to training by file number.

    prepared = prepare_once(config)   # find, look, decode-check, choose size and channels, split (may refuse)
    splits = as_splits(prepared, config)

prepare() does everything that can refuse the folder, from the app's
check_config, so a folder that cannot be used is one line and exit 2 before
the run makes its folder. Its first pass reads every file's header and then
decodes every file once (pipelines/image_files.py): files that cannot be used
are listed (in the run folder's skipped_files.txt) and counted, never read
again, so training never meets one mid-epoch. The pass's findings are kept in
DATA_DIR/images/<fingerprint>-2/: a second run on the same folder (a resume,
tuning, --explain) reads no file twice. The fingerprint is every file's path,
size and modification time, so a changed folder is a new run, never a resume.
Under multi_worker the workers share the pass, a part each, when they share
DATA_DIR (pipelines/parts.py); workers with a DATA_DIR each do all of it.

The splits hold file numbers; vectorize turns a batch of them into pixels:
from the decoded copy (--cache memory: in memory; disk: a memory-mapped file
in DATA_DIR/images/) or by decoding the files again every epoch (none).
"""
from __future__ import annotations

import hashlib
import os
import statistics
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from core.errors import UsageError
from pipelines import class_folders, image_files, parts, splits as splitting
from pipelines.input import Splits
from training.strategy import read_tf_config

SMOKE_FILES = (512, 128, 128)  # train, validation, test pictures of --smoke
MIN_SIZE, MAX_DEFAULT_SIZE = 8, 128  # --image-size: the model's least; the default's most (a CPU's time)
LAYOUT = 2  # of DATA_DIR/images/<fingerprint>-<LAYOUT>/, the first pass's findings
MEMORY_CACHE = 1 << 30  # --cache auto keeps decoded pictures in memory up to this many bytes, else decodes again


class Prepared(NamedTuple):
    folder: str
    paths: list  # the usable files, in the folder's order
    labels: np.ndarray  # int64 per usable file
    classes: list
    skipped: list  # (path, why) of files that cannot be used
    size: int
    channels: int
    cache: str  # "memory", "disk" or "none"
    assignment: np.ndarray  # int8 per usable file (pipelines/splits.py codes)
    fingerprint: str
    notes: list  # what was chosen and why, a line each
    rows: np.ndarray  # each usable file's row in the decoded cache (which also holds the files that failed)
    stored: list  # the decoded cache's files, in order (pipelines/image_files.py: check_apart), or [] (none)


def fingerprint(paths: list) -> str:
    digest = hashlib.sha256()
    for p in paths:
        stat = os.stat(p)
        digest.update(f"{p}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def findings(data_dir: str, key: str) -> Path:
    """The first pass's findings on the folder with this fingerprint (pipelines/parts.py's files)."""
    return Path(data_dir) / "images" / f"{key}-{LAYOUT}"


def member(config) -> tuple[int, int]:
    """This process's place among the processes that share the first pass: (0, 1) but under multi_worker,
    where TF_CONFIG's chief comes first, then its workers."""
    if config.strategy != "multi_worker":
        return 0, 1
    tf_config = read_tf_config()
    cluster, task = tf_config["cluster"], tf_config["task"]
    chiefs = len(cluster.get("chief", []))
    return (0 if task["type"] == "chief" else chiefs + int(task["index"])), chiefs + len(cluster["worker"])


def headers(found: class_folders.Found, folder: Path, place: tuple[int, int], print_=print) -> list:
    """[format, width, height, mode, problem] per file: the first pass's look at every header, or what an
    earlier run on the same folder found."""
    earlier = parts.finished(folder, "looks")
    if earlier is not None:
        return [look for done in earlier for look in done["looks"]]
    print_(f"Looking at {len(found.paths):,} files in {len(found.classes)} class folders ...", flush=True)

    def work(part: int, begin: int, end: int, touch) -> dict:
        progress = lambda line: (touch(), print_(line, flush=True))  # noqa: E731
        return {"looks": [list(look) for look in image_files.probe(found.paths[begin:end], progress=progress)]}

    return [look for done in parts.share(work, len(found.paths), folder, "looks", place,
                                         progress=lambda line: print_(line, flush=True)) for look in done["looks"]]


def choose_size(given: int, looks: list) -> tuple[int, str]:
    if given:
        if given < MIN_SIZE:
            raise UsageError(f"--image-size {given} is too small for the model: at least {MIN_SIZE}")
        return given, f"image size {given} x {given} (--image-size)"
    shorter = statistics.median(min(look[1], look[2]) for look in looks)
    size = int(max(MIN_SIZE, min(shorter, MAX_DEFAULT_SIZE)))
    why = "the pictures' median shorter side" + (f" is {shorter:g}; larger costs time (--image-size)"
                                                 if shorter > MAX_DEFAULT_SIZE else "")
    return size, f"image size {size} x {size} ({why})"


def choose_channels(given: int, looks: list) -> tuple[int, str]:
    if given:
        return given, f"{given} channel{'s' if given > 1 else ''} (--channels)"
    colour = sum(look[3] not in image_files.GREY_MODES for look in looks)
    if colour:
        return 3, f"3 channels (RGB: {colour:,} of {len(looks):,} pictures are in colour)"
    return 1, "1 channel (every picture is grey)"


def prepare(config, print_=print) -> Prepared:
    """Find the files, read their headers, choose size and channels, decode every file once (writing the
    cache when there is one), split. Refuses what cannot be used, one line."""
    o = config.options
    found = image_files.find(o["data"])
    if not found.paths:
        raise UsageError(f"--data {o['data']}: the class folders hold no files")
    key = fingerprint(found.paths)
    folder, place = findings(config.data_dir, key), member(config)
    all_looks = headers(found, folder, place, print_)
    readable = [i for i, look in enumerate(all_looks) if not look[4]]  # headers fine: decoded next
    if not readable:
        raise UsageError(f"--data {o['data']}: none of its {len(found.paths):,} files is a picture TensorFlow can "
                         f"decode ({all_looks[0][4]}: {found.paths[0]})")
    looks = [all_looks[i] for i in readable]
    size, size_note = choose_size(o["image_size"], looks)
    channels, channel_note = choose_channels(o["channels"], looks)
    cache = o["cache"] if o["cache"] != "auto" else (
        "memory" if len(readable) * size * size * channels <= MEMORY_CACHE else "none")
    name = f"pixels-{size}-{channels}"
    decoded = parts.finished(folder, name)  # a pass that kept the pixels checked them too
    if decoded is None and cache == "none":
        name = "check"
        decoded = parts.finished(folder, name)
    if decoded is None:
        print_(f"Decoding {len(readable):,} pictures to {size} x {size} x {channels} ...", flush=True)
        decoded = image_files.check_apart([found.paths[i] for i in readable], size, channels, folder, name,
                                          keep=name != "check", member=place)
    failed = [(readable[k], why) for done in decoded for k, why in done["failed"]]
    stored = [str(folder / done["pixels"]) for done in decoded] if cache != "none" else []
    broken = {i for i, _ in failed}
    rows = [k for k, i in enumerate(readable) if i not in broken]  # each usable file's row in the cache
    keep = [readable[k] for k in rows]
    skipped = ([(found.paths[i], look[4]) for i, look in enumerate(all_looks) if look[4]]
               + [(found.paths[i], why) for i, why in failed])
    if not keep:
        raise UsageError(f"--data {o['data']}: none of its {len(found.paths):,} files is a picture TensorFlow can "
                         f"decode ({skipped[0][1]}: {skipped[0][0]})")
    labels = found.labels[keep]
    empty = [c for i, c in enumerate(found.classes) if not np.any(labels == i)]
    if empty:
        raise UsageError(f"--data {o['data']}: class {empty[0]!r} has no picture that can be decoded")
    validation, test = splitting.parse_fractions(o["split_fractions"])
    if found.given_split is None:
        assignment = splitting.random_split(labels, validation, test, config.seed)
        how = f"stratified by class, seed {config.seed}, shares {validation:g} validation, {test:g} test"
    else:
        assignment = found.given_split[keep].copy()
        train = np.flatnonzero(assignment == splitting.TRAIN)
        holes = [(v if not np.any(assignment == code) else 0.0) for code, v in
                 ((splitting.VALIDATION, validation), (splitting.TEST, test))]
        assignment[train] = splitting.random_split(labels[train], *holes, config.seed)
        how = f"as the {found.layout} say" + (f"; {', '.join(n for n, h in zip(('validation', 'test'), holes) if h)} "
                                              f"drawn from train, seed {config.seed}" if any(holes) else "")
    splitting.check(assignment, f"--data {o['data']}")
    notes = [f"{o['data']}: {len(keep):,} pictures in {len(found.classes)} classes ({found.layout})"
             + (f"; {len(skipped):,} files skipped (listed in the run folder's skipped_files.txt)" if skipped else ""),
             f"  {size_note}; {channel_note}; decoded pictures cached: {cache}",
             f"  split: {how}"]
    return Prepared(o["data"], [found.paths[i] for i in keep], labels, found.classes, skipped, size, channels, cache,
                    assignment, key, notes, np.array(rows, np.int64), stored)


_PREPARED: dict = {}


def prepare_once(config) -> Prepared:
    """prepare(), once per process for the same folder and settings: its lines are printed once."""
    o = config.options
    key = (o["data"], config.data_dir, config.seed, o["image_size"], o["channels"], o["cache"], o["split_fractions"])
    if key not in _PREPARED:
        _PREPARED[key] = prepare(config)
        print("\n".join(_PREPARED[key].notes), flush=True)
    return _PREPARED[key]


def store(prepared: Prepared):
    """The decoded pictures (prepare wrote them), [rows, size, size, channels] uint8: read into memory,
    memory-mapped (--cache disk), or None (--cache none: decoded again every epoch)."""
    if prepared.cache == "none":
        return None
    arrays = [np.load(path, mmap_mode="r") for path in prepared.stored]
    if prepared.cache == "disk":
        return arrays[0] if len(arrays) == 1 else Parted(arrays)
    pixels = np.empty((sum(len(a) for a in arrays), *arrays[0].shape[1:]), np.uint8)
    start = 0
    for a in arrays:
        pixels[start:start + len(a)] = a
        start += len(a)
    return pixels


class Parted:
    """Memory-mapped parts of the decoded pictures (one per worker that decoded them), read as one array."""

    def __init__(self, arrays: list):
        self.arrays, self.starts = arrays, np.cumsum([0] + [len(a) for a in arrays])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        which = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), *self.arrays[0].shape[1:]), np.uint8)
        for part in np.unique(which):
            chosen = which == part
            out[chosen] = self.arrays[part][rows[chosen] - self.starts[part]]
        return out


def pixels_of(prepared: Prepared, pixels: np.ndarray | None):
    """A batch of file numbers -> uint8 [batch, size, size, channels], in a tf.data pipeline."""
    shape = [prepared.size, prepared.size, prepared.channels]
    if pixels is None:
        paths = tf.constant(prepared.paths)

        def read(numbers):
            return tf.map_fn(lambda p: image_files.decode_file(p, prepared.size, prepared.channels),
                             tf.gather(paths, numbers), fn_output_signature=tf.TensorSpec(shape, tf.uint8),
                             parallel_iterations=16)
    else:
        rows = prepared.rows

        def read(numbers):
            out = tf.numpy_function(lambda n: pixels[rows[np.asarray(n)]], [numbers], tf.uint8, stateful=False)
            out.set_shape([None, *shape])
            return out
    return read


def numbers_of(prepared: Prepared, code: int, seed: int) -> np.ndarray:
    """One split's file numbers, in an order shuffled by the seed (so --smoke's slice has every class)."""
    numbers = np.flatnonzero(prepared.assignment == code)
    return numbers[np.random.default_rng([seed % 2**32, code]).permutation(len(numbers))]


def as_splits(prepared: Prepared, config) -> Splits:
    """Train / validation / test datasets of (file number, class); vectorize reads the pixels."""
    datasets = []
    for code, smoke in zip((splitting.TRAIN, splitting.VALIDATION, splitting.TEST), SMOKE_FILES):
        numbers = numbers_of(prepared, code, config.seed)
        numbers = numbers[:smoke] if config.smoke else numbers
        datasets.append(tf.data.Dataset.from_tensor_slices((numbers.astype(np.int64), prepared.labels[numbers])))
    read = pixels_of(prepared, store(prepared))

    def vectorize(numbers, labels):
        return read(numbers), labels

    about = {"data": prepared.folder, "fingerprint": prepared.fingerprint, "classes": prepared.classes,
             "image_size": prepared.size, "channels": prepared.channels,
             "files": "files.txt: the usable files in order; split.npy: each one's split"}
    files = splitting.record(prepared.assignment, about)
    files["files.txt"] = "".join(f"{p}\n" for p in prepared.paths).encode()
    files["skipped_files.txt"] = "".join(f"{p}\t{why}\n" for p, why in prepared.skipped).encode()
    info = {"prepared": prepared, "read": read}
    return Splits(*datasets, source=f"{prepared.folder} ({len(prepared.paths):,} pictures)", info=info,
                  vectorize=vectorize, cache=False, files=files)

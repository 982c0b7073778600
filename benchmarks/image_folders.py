"""Real picture folders for the image folder app's tests and benchmark, made from installed packages.

    fashion_folder(out, per_split=None)   Debian's dataset-fashion-mnist as PNG files in train/, validation/
                                          and test/ class folders: the apps.fashion_mnist split exactly
                                          (55,000 / 5,000 / 10,000), or the first per_split of each
    messy_folder(out)                     two classes of real pictures in every format and mode the app
                                          must read, and the files it must list and skip

Nothing is vendored: the pictures are Fashion-MNIST's, written out here.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from pipelines import fashion_mnist

SPLITS = ("train", "validation", "test")


def folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)  # "T-shirt/top" -> "T-shirt_top"


def fashion_arrays() -> dict:
    """{split: (uint8 [N, 28, 28], int64 [N])} as apps.fashion_mnist splits the Debian files."""
    arrays = fashion_mnist.debian_arrays()
    x, y, cut = arrays["x_train"][..., 0], arrays["y_train"], fashion_mnist.TRAIN_SIZE
    return {"train": (x[:cut], y[:cut]), "validation": (x[cut:], y[cut:]),
            "test": (arrays["x_test"][..., 0], arrays["y_test"])}


def fashion_folder(out: Path, per_split: int | None = None) -> Path:
    """out/{train,validation,test}/<class>/<n>.png; written once (a finished folder has a DONE file)."""
    from PIL import Image

    out = Path(out)
    if (out / "DONE").exists():
        return out
    for split, (x, y) in fashion_arrays().items():
        x, y = (x, y) if per_split is None else (x[:per_split], y[:per_split])
        for name in fashion_mnist.CLASS_NAMES:
            (out / split / folder_name(name)).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(x, y)):
            Image.fromarray(image).save(out / split / folder_name(fashion_mnist.CLASS_NAMES[label]) / f"{i:05d}.png")
    (out / "DONE").write_text("")
    return out


def _encoded(image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def messy_folder(out: Path) -> dict:
    """out/{Trouser,Bag}/...: real Fashion-MNIST pictures in every format and colour mode, at other sizes,
    and the files a real folder has that are no pictures. Returns {file name: what the app must do}:
    "read" or the start of the reason it is skipped."""
    from PIL import Image

    x, y = fashion_arrays()["test"]
    out = Path(out)
    expected = {}
    for label, name in ((1, "Trouser"), (8, "Bag")):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        pictures = [Image.fromarray(255 - image) for image in x[y == label][:40]]  # dark on light, as photographed
        for i, picture in enumerate(pictures[:24]):  # plain training material: PNG and JPEG at mixed sizes
            side = (28, 40, 64, 100)[i % 4]
            resized = picture.resize((side, side + 6 * (i % 3)))
            (folder / f"plain{i:02d}.{'png' if i % 2 else 'jpg'}").write_bytes(
                _encoded(resized.convert("RGB") if i % 2 == 0 else resized, "PNG" if i % 2 else "JPEG"))
            expected[f"{name}/plain{i:02d}.{'png' if i % 2 else 'jpg'}"] = "read"
        p = iter(pictures[24:])
        rgb = next(p).resize((60, 60)).convert("RGB")
        cases = {
            "cmyk.jpg": _encoded(rgb.convert("CMYK"), "JPEG"),
            "progressive.jpg": _encoded(next(p).convert("RGB"), "JPEG", progressive=True),
            "sixteen_bit.png": _encoded(Image.fromarray(np.asarray(next(p), np.uint16) * 257), "PNG"),
            "palette.png": _encoded(next(p).convert("RGB").convert("P"), "PNG"),
            "palette_transparent.png": _encoded(next(p).convert("RGB").convert("P"), "PNG", transparency=0),
            "grey_alpha.png": _encoded(next(p).convert("LA"), "PNG"),
            "rgba.png": _encoded(next(p).convert("RGBA"), "PNG"),
            "animated.gif": _encoded(next(p), "GIF", save_all=True, append_images=[next(p)]),
            "picture.bmp": _encoded(next(p).convert("RGB"), "BMP"),
            "picture.webp": _encoded(next(p).convert("RGB"), "WEBP"),
            "named_wrong.png": _encoded(next(p).convert("RGB"), "JPEG"),  # a JPEG called .png: read by content
        }
        for file, data in cases.items():
            (folder / file).write_bytes(data)
            expected[f"{name}/{file}"] = "read"
        bad = {
            "empty.jpg": (b"", "empty file"),
            "text.jpg": (b"this is a note, not a picture\n", "not a picture"),
            "truncated.jpg": (_encoded(rgb, "JPEG", quality=95)[:-400], "cannot be decoded"),
            "picture.tiff": (_encoded(rgb, "TIFF"), "TIFF is not a format"),
            "huge.png": (_encoded(Image.new("L", (8000, 7000)), "PNG"), "too large to decode"),  # 56 MP, 60 KB
        }
        for file, (data, why) in bad.items():
            (folder / file).write_bytes(data)
            expected[f"{name}/{file}"] = why
    return expected

"""A user's picture file as an image model's input: any format Pillow reads, any size, any colour mode.

    pixels, note = picture_files.read(path, (28, 28), channels=1)   # uint8 [28, 28, 1], "a 100x100 RGB PNG: ..."

What is done, in this order, and said in one line (the note) so the user knows
what the model saw:
  - a photo's EXIF orientation is applied (a phone's portrait photo stands up);
  - 16-bit pixels (PNG "I;16", TIFF) are scaled to 0..255, not clipped at 255;
  - transparent pixels (RGBA, grey+alpha, a palette with a transparent colour)
    are laid over white, as a browser shows them;
  - the colours become grey (or RGB for a 3-channel model): CMYK, palette and
    YCbCr included; an animated GIF gives its first frame;
  - a picture of another size is padded to a square with its border's colour
    (a digit is not stretched) and resized with Lanczos filtering.
NumPy arrays (.npy: [H, W], [H, W, 1] or [H, W, 3]; 0..255, or floats in 0..1)
take the same way from the colour step on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import UsageError


def read(path: str, size: tuple[int, int], channels: int) -> tuple[np.ndarray, str]:
    """uint8 [height, width, channels] and the note ("" if the file was already that)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    file = Path(path)
    wanted = "a picture (PNG, JPEG, GIF, BMP, WebP or NPY)"
    if not file.is_file():
        raise UsageError(f"--explain {path}: no such file; give {wanted}")
    done = []
    if file.suffix.lower() == ".npy":
        image, described = _from_array(path, wanted)
    else:
        try:
            with Image.open(file) as opened:
                described = f"a {opened.width}x{opened.height} {opened.mode} {opened.format}"
                opened.seek(0)  # an animation's first frame
                image = ImageOps.exif_transpose(opened)
                image.load()
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
            raise UsageError(f"--explain {path}: not a picture Pillow can read ({err}); give {wanted}") from None
    if image.mode in ("I;16", "I;16L", "I;16B", "I", "F"):
        values = np.asarray(image, np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values * 255.0 / top, 0, 255).round().astype(np.uint8))
        if top > 255:
            done.append("16-bit values scaled to 0..255")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
        done.append("transparency laid over white")
    mode = "L" if channels == 1 else "RGB"
    if image.mode != mode:
        done.append("grey-scaled" if mode == "L" else "converted to RGB")
        image = image.convert(mode)
    if image.size != (size[1], size[0]):
        width, height = image.size
        if width != height:
            side = max(width, height)
            pixels = np.asarray(image)
            border = np.concatenate([pixels[[0, -1]].reshape(-1, channels), pixels[:, [0, -1]].reshape(-1, channels)])
            fill = tuple(int(v) for v in np.median(border, axis=0))
            square = Image.new(mode, (side, side), fill[0] if channels == 1 else fill)
            square.paste(image, ((side - width) // 2, (side - height) // 2))
            image = square
            done.append("padded to a square with its border's colour")
        image = image.resize((size[1], size[0]), Image.LANCZOS, reducing_gap=3.0)
        done.append(f"resized to {size[1]}x{size[0]}")
    pixels = np.asarray(image, np.uint8).reshape(size[0], size[1], channels)
    return pixels, (f"{described}: {', '.join(done)}" if done else "")


def _from_array(path: str, wanted: str):
    from PIL import Image

    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise UsageError(f"--explain {path}: not a NumPy array file ({err}); give {wanted}") from None
    if array.ndim == 3 and array.shape[-1] in (1, 3):
        array = array[..., 0] if array.shape[-1] == 1 else array
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 1 or array.dtype.kind not in "uif":
        raise UsageError(f"--explain {path}: an array of shape {list(array.shape)} and type {array.dtype} is not a "
                         "picture; give [height, width], [height, width, 1] or [height, width, 3] numbers")
    if array.dtype.kind == "f" and array.size and np.nanmax(array) <= 1.0:
        array = array * 255.0
    pixels = np.clip(np.nan_to_num(np.asarray(array, np.float64)), 0, 255).round().astype(np.uint8)
    shape = "x".join(str(s) for s in array.shape[1::-1])
    return Image.fromarray(pixels), f"a {shape} {'grey' if array.ndim == 2 else 'RGB'} NumPy array"

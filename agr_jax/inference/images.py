"""Inputs -> RGB uint8 arrays, with a reason for every input that cannot be used.

Accepts paths, bytes, PIL images and numpy HWC uint8 arrays. The header is read before any
pixel (PIL opens lazily), so a huge image is refused without decoding it. Grayscale, CMYK,
palette and alpha images are converted to RGB and say so in `note`.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image, ImageOps

MAX_PIXELS = 50_000_000  # larger images are refused (decompression bombs, memory)
CONVERTED = {"L": "grayscale", "LA": "grayscale with alpha", "1": "black-and-white",
             "I": "32-bit grayscale", "I;16": "16-bit grayscale", "F": "float grayscale",
             "CMYK": "CMYK", "P": "palette", "PA": "palette with alpha", "RGBA": "alpha",
             "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV"}


class BadInput(ValueError):
    """An input that gives no image; the message is the reason reported in its row."""


@dataclasses.dataclass
class Loaded:
    name: str  # the path, or "<bytes #i>" / "<array #i>" / "<PIL #i>"
    image: np.ndarray  # (H, W, 3) uint8 RGB
    note: str = ""  # e.g. "converted from CMYK to RGB"
    source_size: tuple[int, int] | None = None  # (width, height) before a crop's resize


def name_of(item: Any, index: int) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    kind = {bytes: "bytes", bytearray: "bytes", np.ndarray: "array"}.get(type(item), "PIL")
    return f"<{kind} #{index}>"


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise BadInput("file not found")
    if path.is_dir():
        raise BadInput("is a directory")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"unreadable: {e.strerror or e}") from e
    return data


def _open(data: bytes) -> Image.Image:
    if not data:
        raise BadInput("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                pil = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Image.UnidentifiedImageError as e:
        raise BadInput("not an image (format not recognised)") from e
    except (OSError, SyntaxError, ValueError) as e:  # what PIL raises on a cut-off header
        raise BadInput(f"truncated or corrupt image header ({e})") from e
    check_size(*pil.size)
    return pil


def check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise BadInput(f"too large: {width}x{height} = {width * height / 1e6:.0f} MP "
                       f"(the limit is {MAX_PIXELS / 1e6:.0f} MP)")
    if width == 0 or height == 0:
        raise BadInput(f"empty image ({width}x{height})")


def to_rgb(pil: Image.Image) -> tuple[np.ndarray, str]:
    """Decodes all pixels (a truncated file fails here), applies EXIF orientation."""
    try:
        pil.load()
    except OSError as e:
        raise BadInput(f"truncated or corrupt image data ({e})") from e
    try:
        pil = ImageOps.exif_transpose(pil)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the image
        pass
    note = ""
    if pil.mode != "RGB":
        what = CONVERTED.get(pil.mode, pil.mode)
        note = f"converted from {what} to RGB"
        if pil.mode in ("I", "I;16", "F"):
            arr = np.asarray(pil, np.float64)
            span = max(float(arr.max() - arr.min()), 1e-9)
            pil = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8))
        pil = pil.convert("RGB")
    return np.asarray(pil), note


def from_array(array: np.ndarray) -> tuple[np.ndarray, str]:
    if array.dtype != np.uint8:
        raise BadInput(f"numpy array of dtype {array.dtype}; expected uint8 (H, W, 3)")
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2), "converted from grayscale to RGB"
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise BadInput(f"numpy array of shape {array.shape}; expected (H, W, 3) uint8 RGB")
    check_size(array.shape[1], array.shape[0])
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2), "converted from grayscale to RGB"
    if array.shape[2] == 4:
        return np.ascontiguousarray(array[:, :, :3]), "converted from alpha to RGB"
    return array, ""


def load(item: Any, index: int = 0) -> Loaded:
    """One input -> `Loaded`; raises `BadInput` with the reason."""
    name = name_of(item, index)
    if isinstance(item, np.ndarray):
        image, note = from_array(item)
    elif isinstance(item, Image.Image):
        check_size(*item.size)
        image, note = to_rgb(item)
    elif isinstance(item, (bytes, bytearray, str, Path)):
        data = bytes(item) if isinstance(item, (bytes, bytearray)) else _read_bytes(Path(item))
        image, note = to_rgb(_open(data))
    else:
        raise BadInput(f"unsupported input type {type(item).__name__}; expected a path, "
                       "bytes, a PIL image or a numpy (H, W, 3) uint8 array")
    return Loaded(name, image, note)


def crop(item: Any, size: int, index: int = 0) -> Loaded:
    """An already-aligned face crop resized to `size` (the training decode: PIL bilinear).

    RGB JPEG bytes take simplejpeg at a reduced DCT scale (strict: a truncated file fails)."""
    if isinstance(item, (bytes, bytearray, str, Path)):
        name = name_of(item, index)
        data = bytes(item) if isinstance(item, (bytes, bytearray)) else _read_bytes(Path(item))
        if data[:2] == b"\xff\xd8":
            try:
                header = simplejpeg.decode_jpeg_header(data)
                check_size(header[1], header[0])
                if header[2] == "YCbCr" or header[2] == "RGB":
                    img = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size,
                                                 min_width=size, strict=True)
                    return Loaded(name, resize(img, size), "", (header[1], header[0]))
            except ValueError:
                pass  # PIL below gives the reason (truncated, CMYK, progressive oddities)
        pil = _open(data)
        image, note = to_rgb(pil)
        return Loaded(name, resize(image, size), note, (image.shape[1], image.shape[0]))
    loaded = load(item, index)
    loaded.source_size = (loaded.image.shape[1], loaded.image.shape[0])
    loaded.image = resize(loaded.image, size)
    return loaded


def resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))

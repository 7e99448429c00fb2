"""Inputs -> RGB uint8 arrays, with a reason for every input that cannot be used.

Accepts paths, bytes, PIL images and numpy HWC uint8 arrays. The header is read before any
pixel (PIL opens lazily), so a huge image is refused without decoding it; the limit is
checked per call, never by changing PIL's process-wide one. Grayscale, CMYK, palette and
alpha images are converted to RGB and say so in `note`. EXIF orientation is applied on every
path (the JPEG fast paths decode with simplejpeg, which ignores it, and turn the pixels
here).

A photo for detection also gets a working copy whose long side a `Bound` limits: RGB JPEGs
decode it directly at a reduced DCT scale (libjpeg's scaled IDCT) and decode the full
resolution only when it is first asked for (the face crops), so a 12 MP photo without a face
never pays a full decode.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Callable
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
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the numpy view that shows the photo upright (as ImageOps.exif_transpose)
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


class BadInput(ValueError):
    """An input that gives no image; the message is the reason reported in its row."""


@dataclasses.dataclass(frozen=True)
class Bound:
    """How large the detection working copy of a (width, height) photo is: its long side is
    `scale` times the photo's, rounded up to the next of `sides` (the detector's canvases:
    it costs the same up to them), at least `min_side` and at most `max_side`; never more
    than the photo's own."""

    scale: float = 1.0
    max_side: int = 1280
    min_side: int = 640
    sides: tuple[int, ...] = ()

    def size(self, width: int, height: int) -> tuple[int, int]:
        long = max(width, height)
        side = int(np.ceil(long * self.scale - 1e-9))
        side = next((s for s in sorted(self.sides) if s >= side), side)
        side = min(long, self.max_side, max(side, self.min_side))
        if side >= long:
            return width, height
        return (max(1, round(width * side / long)), max(1, round(height * side / long)))


class Loaded:
    """One usable input: `image`, the full-resolution RGB pixels (decoded on first use when
    a cheaper working copy came first), and `work`, the copy a detector runs on."""

    __slots__ = ("name", "note", "source_size", "_image", "_decode", "_size", "_work",
                 "_stored")

    def __init__(self, name: str, image: np.ndarray | None = None, note: str = "",
                 source_size: tuple[int, int] | None = None, *,
                 work: np.ndarray | None = None,
                 decode: Callable[[], np.ndarray] | None = None,
                 size: tuple[int, int] | None = None,
                 stored: Callable[[int], tuple[np.ndarray, np.ndarray | None]] | None = None):
        if image is None and (decode is None or size is None):
            raise ValueError("Loaded: give the image, or a decode function and its size")
        self.name, self.note, self.source_size = name, note, source_size
        self._image, self._decode, self._work = image, decode, work
        self._stored = stored  # factor -> (pixels as stored at 1/factor, upright -> them)
        self._size = size if image is None else (image.shape[1], image.shape[0])

    @property
    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB at full resolution."""
        if self._image is None:
            self._image = self._decode()
        return self._image

    @image.setter
    def image(self, value: np.ndarray) -> None:
        self._image, self._decode, self._work, self._stored = value, None, None, None
        self._size = (value.shape[1], value.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of `image`, known without decoding it."""
        return self._size

    @property
    def work(self) -> np.ndarray:
        """The detector's working copy (the image itself when it was not reduced)."""
        return self.image if self._work is None else self._work

    def bounded(self, bound: Bound) -> Loaded:
        """Gives this input the working copy `bound` asks for (resized from the full image
        when it has none that small yet); returns self."""
        w, h = bound.size(*self.size)
        if (w, h) != self.size and (self._work is None or self._work.shape[1] > w):
            self._work = shrink(self.image, w, h)
        return self

    def work_scale(self) -> tuple[float, float]:
        """Full-resolution pixels per working-copy pixel, along x and along y."""
        work = self.work
        return self.size[0] / work.shape[1], self.size[1] / work.shape[0]

    def crop_source(self, factor: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
        """Pixels to cut face crops from, and the 2x3 map from `image`'s pixels onto them
        (None: `image` itself). A JPEG whose full resolution is not decoded yet gives it as
        stored (turning 12 MP upright costs more than decoding it) and at 1/`factor` scale
        (libjpeg's DCT scaling) when the crops need no more detail."""
        if self._image is not None or self._stored is None:
            return self.image, None
        return self._stored(factor)

    def release(self) -> None:
        """Drops the full-resolution pixels when they can be decoded again (memory)."""
        if self._decode is not None:
            self._image = None

    def __repr__(self) -> str:
        return f"Loaded({self.name!r}, size={self.size}, note={self.note!r})"


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


def _identify(data: bytes) -> Image.Image | None:
    """PIL's lazy open (the header only) through its format registry, as `Image.open`
    does, but without `Image.open`'s decompression-bomb check: that one reads the
    process-wide `Image.MAX_IMAGE_PIXELS`, and MAX_PIXELS is checked per call instead."""
    prefix = data[:16]
    for load_plugins in (Image.preinit, Image.init):
        load_plugins()
        for fmt in list(Image.ID):
            factory, accept = Image.OPEN[fmt]
            result = not accept or accept(prefix)
            if not result or isinstance(result, str):
                continue
            try:
                return factory(io.BytesIO(data), "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    return None


def _open(data: bytes) -> Image.Image:
    if not data:
        raise BadInput("empty file")
    try:
        pil = _identify(data)
    except Image.DecompressionBombError as e:  # a few formats check frames as they open
        raise BadInput(f"too large: {e}") from e
    except (OSError, ValueError) as e:  # what PIL raises on a cut-off header
        raise BadInput(f"truncated or corrupt image header ({e})") from e
    if pil is None:
        raise BadInput("not an image (format not recognised)")
    check_size(*pil.size)
    return pil


def check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise BadInput(f"too large: {width}x{height} = {width * height / 1e6:.0f} MP "
                       f"(the limit is {MAX_PIXELS / 1e6:.0f} MP)")
    if width == 0 or height == 0:
        raise BadInput(f"empty image ({width}x{height})")


def orientation(pil: Image.Image) -> int:
    """The EXIF orientation (1..8; 1 when absent or unreadable)."""
    try:
        value = int(pil.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the image
        return 1
    return value if value in _UPRIGHT else 1


def upright(array: np.ndarray, orient: int) -> np.ndarray:
    """`array` turned as EXIF `orient` says (contiguous; unchanged for 1)."""
    return np.ascontiguousarray(_UPRIGHT[orient](array)) if orient in _UPRIGHT else array


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


def _jpeg_orientation(data: bytes) -> int:
    """EXIF orientation of JPEG bytes; PIL parses the header only when an Exif block is
    there (most crops have none, and the crop path is timed in microseconds)."""
    if data.find(b"Exif\x00\x00", 2, 65536) < 0:
        return 1
    try:
        return orientation(_open(data))
    except BadInput:
        return 1


def _fast_jpeg(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) of an RGB/YCbCr JPEG simplejpeg decodes, with the
    size checked (width, height upright); None for anything else (PIL decodes it)."""
    if data[:2] != b"\xff\xd8":
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "RGB"):
        return None
    check_size(width, height)
    orient = _jpeg_orientation(data)
    return (height, width, orient) if orient in (5, 6, 7, 8) else (width, height, orient)


def _decode_as_stored(data: bytes, min_width: int = 0, min_height: int = 0) -> np.ndarray:
    """RGB pixels as stored, at the smallest DCT scale at least (min_width, min_height)
    (strict: a truncated file fails)."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=min_height,
                                      min_width=min_width, strict=True)
    except ValueError as e:
        raise BadInput(f"truncated or corrupt image data ({e})") from e


def _decode_jpeg(data: bytes, orient: int, min_width: int = 0, min_height: int = 0) -> np.ndarray:
    """RGB pixels upright, at the smallest DCT scale at least (min_width, min_height) upright
    (strict: a truncated file fails)."""
    if orient in (5, 6, 7, 8):
        min_width, min_height = min_height, min_width
    return upright(_decode_as_stored(data, min_width, min_height), orient)


def upright_frame(orient: int, width: int, height: int) -> np.ndarray:
    """The 2x3 map from upright pixel-index coordinates to those of the pixels as stored
    (`width` x `height`) under EXIF `orient`: `upright`'s view, as an affine map."""
    corners = np.array([[[0, 0], [width - 1, 0]], [[0, height - 1], [width - 1, height - 1]]],
                       np.float64)  # [row, column] -> stored (x, y) of that corner
    seen = _UPRIGHT[orient](corners) if orient in _UPRIGHT else corners
    origin = seen[0, 0]
    along_x, along_y = np.sign(seen[0, 1] - origin), np.sign(seen[1, 0] - origin)
    return np.column_stack([along_x, along_y, origin])


def _stored_jpeg(data: bytes, orient: int,
                 factor: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels as stored, at the DCT scale nearest 1/`factor` not below it; the 2x3 map from
    upright full-resolution pixels onto them, None when they are the same)."""
    height, width = simplejpeg.decode_jpeg_header(data)[:2]
    pixels = _decode_as_stored(data, -(-width // factor), -(-height // factor))
    scale = round(8 * pixels.shape[1] / width) / 8  # libjpeg scales by M/8
    if scale == 1 and orient not in _UPRIGHT:
        return pixels, None
    frame = upright_frame(orient, width, height) * scale
    frame[:, 2] += 0.5 * scale - 0.5  # pixel centres onto pixel centres
    return pixels, frame


def _bounded_jpeg(name: str, data: bytes, width: int, height: int, orient: int,
                  bound: Bound) -> Loaded:
    w, h = bound.size(width, height)
    if (w, h) == (width, height):
        return Loaded(name, _decode_jpeg(data, orient))
    work = _decode_jpeg(data, orient, w, h)  # the smallest DCT scale not below (w, h)
    return Loaded(name, work=shrink(work, w, h), size=(width, height),
                  decode=lambda: _decode_jpeg(data, orient),
                  stored=lambda factor: _stored_jpeg(data, orient, factor))


def load(item: Any, index: int = 0, bound: Bound | None = None) -> Loaded:
    """One input -> `Loaded`; raises `BadInput` with the reason. With `bound`, the result
    carries the detection working copy it asks for (RGB JPEG: decoded at reduced scale,
    the full resolution decoded on first use)."""
    name = name_of(item, index)
    if isinstance(item, np.ndarray):
        image, note = from_array(item)
    elif isinstance(item, Image.Image):
        check_size(*item.size)
        image, note = to_rgb(item)
    elif isinstance(item, (bytes, bytearray, str, Path)):
        data = bytes(item) if isinstance(item, (bytes, bytearray)) else _read_bytes(Path(item))
        fast = _fast_jpeg(data)
        if fast is not None:
            try:
                if bound is not None:
                    return _bounded_jpeg(name, data, *fast, bound)
                return Loaded(name, _decode_jpeg(data, fast[2]))
            except BadInput:
                pass  # PIL below gives the reason (truncated, progressive oddities)
        image, note = to_rgb(_open(data))
    else:
        raise BadInput(f"unsupported input type {type(item).__name__}; expected a path, "
                       "bytes, a PIL image or a numpy (H, W, 3) uint8 array")
    loaded = Loaded(name, image, note)
    return loaded.bounded(bound) if bound is not None else loaded


def crop(item: Any, size: int, index: int = 0) -> Loaded:
    """An already-aligned face crop resized to `size` (the training decode: PIL bilinear).

    RGB JPEG bytes take simplejpeg at a reduced DCT scale (strict: a truncated file fails)."""
    if isinstance(item, (bytes, bytearray, str, Path)):
        name = name_of(item, index)
        data = bytes(item) if isinstance(item, (bytes, bytearray)) else _read_bytes(Path(item))
        fast = _fast_jpeg(data)
        if fast is not None:
            try:
                img = _decode_jpeg(data, fast[2], size, size)
                return Loaded(name, resize(img, size), "", fast[:2])
            except BadInput:
                pass  # PIL below gives the reason (truncated, CMYK, progressive oddities)
        image, note = to_rgb(_open(data))
        return Loaded(name, resize(image, size), note, (image.shape[1], image.shape[0]))
    loaded = load(item, index)
    loaded.source_size = loaded.size
    loaded.image = resize(loaded.image, size)
    return loaded


def resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` resized to (width, height) with PIL's antialiased bilinear filter (box
    reductions first when it shrinks a lot: `reducing_gap`)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height),
                                                    Image.Resampling.BILINEAR,
                                                    reducing_gap=3.0))

"""Frame detected faces as UTKFace's training crops are framed.

`align_face` maps the 5 MTCNN landmarks onto `TEMPLATE` with the least-squares similarity
transform (Umeyama 1991) and warps bilinearly (antialiased when it shrinks); `crop_box`
serves box-only detectors with a square crop whose margin reproduces `BOX_TEMPLATE`. Both
templates were MEASURED on UTKFace crops (MTCNN run on each crop padded into a black canvas;
per-coordinate medians), see benchmarks/align_template.py. Normalised coordinates: (pixel
index + 0.5) / crop side, so 0..1 spans the crop whatever its size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# nice -n 10 python benchmarks/align_template.py --n 2000 --seed 0 --data ../shared/utkface
# -> 1971 of 2000 crops kept; IQR per coordinate 0.016-0.044 of the crop (docs/detection.md).
# rows: left_eye, right_eye, nose, mouth_left, mouth_right; columns: x, y
TEMPLATE = np.array([[0.3027, 0.2943], [0.6977, 0.2955], [0.4964, 0.5280], [0.3258, 0.6980],
                     [0.6727, 0.6979]], np.float64)
# the same run: MTCNN's box x0, y0, x1, y1 in the crop (the box starts above the crop's top)
BOX_TEMPLATE = np.array([0.0640, -0.0785, 0.9101, 0.9709], np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix M (rotation, uniform scale, translation) minimising
    sum |M @ [src, 1] - dst|^2 (Umeyama's closed form, no reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity_transform: need matching (N>=2, 2) points, "
                         f"got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s ** 2).sum() / len(src)
    if var_s == 0:
        raise ValueError("similarity_transform: source points coincide")
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = (sigma * np.diag(sign)).sum() / var_s
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def _square(matrix: np.ndarray) -> np.ndarray:
    """A 2x3 affine map as its 3x3 homogeneous matrix (to compose and invert)."""
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def map_scale(matrix: np.ndarray) -> float:
    """How much a 2x3 map scales lengths (the root of its linear part's |determinant|)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, np.float64)[:, :2]))))


# A minifying warp first samples at the source's own scale, at most this many times `size`;
# a face larger than that is first box-reduced by an integer factor (PIL's `reduce`) so the
# warp's cost stays bounded however many pixels the face has in a phone photo.
MAX_SUPERSAMPLE = 4


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """(size, size, C) uint8: `image` mapped by `matrix` (pixel-index coordinates); outside
    the image reads black.

    The training crops are PIL's antialiased bilinear resize of a ~200 px crop; point
    sampling a face 2.5x larger than `size` aliases instead, and the model reads the
    sharper, noisier face differently (issue 27's alignment check: race -1 point, age +0.5
    years). So a minifying map is warped at about the source's scale and then resized by
    PIL, as the training decode does."""
    matrix = np.asarray(matrix, np.float64)
    scale = map_scale(matrix)
    if scale <= 0 or not np.isfinite(scale):
        raise ValueError(f"warp_affine: singular matrix {matrix}")
    if scale >= 1.0:
        return _warp_point_sampled(image, matrix, size)
    factor = int(np.ceil(1.0 / (scale * MAX_SUPERSAMPLE)))
    if factor > 1:
        image, matrix = _box_reduced(image, matrix, size, factor)
        scale *= factor
    side = int(min(np.ceil(size / scale), MAX_SUPERSAMPLE * size))
    k = side / size  # output pixel p of `size` covers (p + 0.5) * k - 0.5 of `side`
    up = np.array([[k, 0.0, 0.5 * k - 0.5], [0.0, k, 0.5 * k - 0.5], [0.0, 0.0, 1.0]])
    large = _warp_point_sampled(image, (up @ _square(matrix))[:2], side)
    channels = large.shape[2]
    resized = Image.fromarray(large if channels != 1 else large[..., 0]).resize(
        (size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized).reshape(size, size, channels)


def _read_corners(matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The inverse map (output pixel -> source pixel), and where it sends the output's four
    corner pixels (2, 4): the source window a warp reads lies within them."""
    inverse = np.linalg.inv(_square(matrix))[:2]
    return inverse, inverse @ np.array([[0, size - 1, 0, size - 1], [0, 0, size - 1, size - 1],
                                        [1, 1, 1, 1]], np.float64)


def _box_reduced(image: np.ndarray, matrix: np.ndarray, size: int,
                 factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The window of `image` that the map reads, averaged over factor x factor blocks, and
    the map re-expressed on it (pixel p of the reduced window covers source pixels
    factor * p .. factor * p + factor - 1 of the window)."""
    _, corners = _read_corners(matrix, size)
    height, width = image.shape[:2]
    x0 = int(np.clip(np.floor(corners[0].min()) - factor, 0, width - 1)) // factor * factor
    y0 = int(np.clip(np.floor(corners[1].min()) - factor, 0, height - 1)) // factor * factor
    x1 = int(np.clip(np.ceil(corners[0].max()) + 2 * factor, x0 + 1, width))
    y1 = int(np.clip(np.ceil(corners[1].max()) + 2 * factor, y0 + 1, height))
    window = np.ascontiguousarray(image[y0:y1, x0:x1])
    channels = window.shape[2]
    reduced = Image.fromarray(window if channels != 1 else window[..., 0]).reduce(factor)
    reduced = np.asarray(reduced).reshape(reduced.height, reduced.width, channels)
    # source pixel index x = factor * p + (factor - 1) / 2 + x0 for reduced pixel index p
    to_source = np.array([[factor, 0.0, (factor - 1) / 2 + x0],
                          [0.0, factor, (factor - 1) / 2 + y0], [0.0, 0.0, 1.0]])
    return reduced, (_square(matrix) @ to_source)[:2]


def _warp_point_sampled(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Bilinear samples of `image` at `matrix`'s inverse map of each output pixel; outside
    reads black.

    PIL's affine transform samples in C (~4x numpy's gather), on float ("F") planes so the
    result is rounded, not truncated (8-bit PIL truncates: 0.45 grey levels darker on
    average). Only the window the samples read is used (a face of a 12 MP photo reads a
    few hundred pixels), with one black pixel around it: PIL clamps neighbours to the edge,
    this makes the border blend into black as a black outside does."""
    inverse, corners = _read_corners(matrix, size)
    height, width, channels = image.shape
    x0 = int(np.clip(np.floor(corners[0].min()), 0, width - 1))
    y0 = int(np.clip(np.floor(corners[1].min()), 0, height - 1))
    x1 = int(np.clip(np.floor(corners[0].max()) + 2, x0 + 1, width))
    y1 = int(np.clip(np.floor(corners[1].max()) + 2, y0 + 1, height))
    window = np.zeros((y1 - y0 + 2, x1 - x0 + 2, channels), np.float32)
    window[1:-1, 1:-1] = image[y0:y1, x0:x1]
    # PIL maps output pixel centre (x + 0.5, y + 0.5) to input coordinate (u + 0.5): shift
    # the pixel-index map by the window's corner (less the black border) and the half pixel
    (a, b, c), (d, e, f) = inverse
    c, f = c - x0 + 1 + 0.5 - 0.5 * (a + b), f - y0 + 1 + 0.5 - 0.5 * (d + e)
    planes = [np.asarray(Image.fromarray(window[..., k], mode="F").transform(
        (size, size), Image.Transform.AFFINE, (a, b, c, d, e, f),
        resample=Image.Resampling.BILINEAR)) for k in range(channels)]
    return np.clip(np.rint(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8)


def template_points(size: int, template: np.ndarray = TEMPLATE) -> np.ndarray:
    """The template in pixel-index coordinates of a (size, size) crop."""
    return np.asarray(template, np.float64) * size - 0.5


def _check(image: np.ndarray, size: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError("expected an (H, W, C) uint8 image")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")


def landmark_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 map putting the 5 landmarks (5, 2) on TEMPLATE in a (size, size) crop."""
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks must be 5 finite (x, y) points, got shape {landmarks.shape}")
    return similarity_transform(landmarks, template_points(size))


def box_matrix(box: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 map of a square crop around a detector box, with the margin that puts an
    MTCNN box where BOX_TEMPLATE says it sits in UTKFace crops; no rotation."""
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"crop_box: empty box {box}")
    tx0, ty0, tx1, ty1 = BOX_TEMPLATE
    side = np.sqrt((x1 - x0) / (tx1 - tx0) * (y1 - y0) / (ty1 - ty0))
    # the crop's corner so the box centre lands on the template box centre
    cx0 = (x0 + x1) / 2 - side * (tx0 + tx1) / 2
    cy0 = (y0 + y1) / 2 - side * (ty0 + ty1) / 2
    k = size / side  # crop pixel-index coords: (p + 0.5) = k * (x - cx0 + 0.5)
    return np.array([[k, 0.0, k * (0.5 - cx0) - 0.5], [0.0, k, k * (0.5 - cy0) - 0.5]])


def through(matrix: np.ndarray, frame: np.ndarray | None) -> np.ndarray:
    """`matrix` (from a photo's upright pixels) re-expressed on pixels that `frame` (2x3,
    upright -> those pixels) maps to: a rotated or DCT-reduced decode of the same photo."""
    if frame is None:
        return matrix
    return (_square(matrix) @ np.linalg.inv(_square(frame)))[:2]


# A photo's crop source may be decoded smaller while every face in it still spans at least
# this many times the crop's side (libjpeg's DCT scaling is itself an area-like average, so
# the warp then supersamples a pre-filtered face). 2 rather than MAX_SUPERSAMPLE: a 12 MP
# phone photo's ~500 px faces decode at 1/2 for 112 px crops, the decode 1.8x and each
# warp ~2.5x cheaper (tests/test_working_copy.py bounds the change to the crops).
DECODE_SUPERSAMPLE = 2


def reduction(matrices: list[np.ndarray], limit: int = 8) -> int:
    """The largest power of two (<= limit) by which a photo may be decoded smaller and keep
    each of these warps reading at least DECODE_SUPERSAMPLE source pixels per crop pixel."""
    allowed = limit
    for matrix in matrices:
        scale = map_scale(matrix)
        allowed = min(allowed, int(1.0 / (scale * DECODE_SUPERSAMPLE)) if scale > 0 else 1)
    factor = 1
    while factor * 2 <= allowed:
        factor *= 2
    return factor


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int,
               frame: np.ndarray | None = None) -> np.ndarray:
    """(size, size, 3) uint8: the face whose 5 landmarks (5, 2) are given, warped so they land
    on TEMPLATE, i.e. framed as a UTKFace crop. `frame`: see `through` (landmarks stay in
    upright photo pixels)."""
    _check(image, size)
    return warp_affine(image, through(landmark_matrix(landmarks, size), frame), size)


def crop_box(image: np.ndarray, box: np.ndarray, size: int,
             frame: np.ndarray | None = None) -> np.ndarray:
    """(size, size, 3) uint8: `box_matrix`'s square crop around a detector box."""
    _check(image, size)
    return warp_affine(image, through(box_matrix(box, size), frame), size)

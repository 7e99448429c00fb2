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
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
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
    large = _warp_point_sampled(image, (up @ np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2], side)
    channels = large.shape[2]
    resized = Image.fromarray(large if channels != 1 else large[..., 0]).resize(
        (size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized).reshape(size, size, channels)


def _box_reduced(image: np.ndarray, matrix: np.ndarray, size: int,
                 factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The window of `image` that the map reads, averaged over factor x factor blocks, and
    the map re-expressed on it (pixel p of the reduced window covers source pixels
    factor * p .. factor * p + factor - 1 of the window)."""
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    corners = inverse @ np.array([[0, size - 1, 0, size - 1], [0, 0, size - 1, size - 1],
                                  [1, 1, 1, 1]], np.float64)
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
    return reduced, (np.vstack([matrix, [0.0, 0.0, 1.0]]) @ to_source)[:2]


def _warp_point_sampled(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    u = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    v = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    return _bilinear(image, u, v)


def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear samples at pixel-index coordinates (u, v); outside reads black.

    Only the window the samples read is used (a face of a 12 MP photo reads a few hundred
    pixels; padding the whole photo per face cost ~0.2 s), and the four neighbours are
    gathered by flat index in float32 (a 896 px supersampled face: ~5x the fancy-indexed
    float64 version); integer shifts keep the sample positions exact."""
    x0, y0 = (int(np.clip(np.floor(t.min()), 0, n - 1)) for t, n in ((u, image.shape[1]),
                                                                       (v, image.shape[0])))
    x1 = int(np.clip(np.floor(u.max()) + 2, x0 + 1, image.shape[1]))
    y1 = int(np.clip(np.floor(v.max()) + 2, y0 + 1, image.shape[0]))
    image, u, v = image[y0:y1, x0:x1], u - x0, v - y0
    h, w, channels = image.shape
    padded = np.zeros((h + 2, w + 2, channels), np.float32)  # one black pixel around
    padded[1:-1, 1:-1] = image
    flat = padded.reshape(-1, channels)
    u = np.clip(u + 1, 0, w + 1)
    v = np.clip(v + 1, 0, h + 1)
    col = np.minimum(np.floor(u).astype(np.int64), w)
    row = np.minimum(np.floor(v).astype(np.int64), h)
    fx = (u - col).astype(np.float32).reshape(-1, 1)
    fy = (v - row).astype(np.float32).reshape(-1, 1)
    at = (row * (w + 2) + col).reshape(-1)
    top = flat[at] + (flat[at + 1] - flat[at]) * fx
    below = at + (w + 2)
    bottom = flat[below] + (flat[below + 1] - flat[below]) * fx
    out = np.rint(top + (bottom - top) * fy)
    return np.clip(out, 0, 255).astype(np.uint8).reshape(*u.shape, channels)


def template_points(size: int, template: np.ndarray = TEMPLATE) -> np.ndarray:
    """The template in pixel-index coordinates of a (size, size) crop."""
    return np.asarray(template, np.float64) * size - 0.5


def _check(image: np.ndarray, size: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError("expected an (H, W, C) uint8 image")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the face whose 5 landmarks (5, 2) are given, warped so they land
    on TEMPLATE, i.e. framed as a UTKFace crop."""
    _check(image, size)
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks must be 5 finite (x, y) points, got shape {landmarks.shape}")
    return warp_affine(image, similarity_transform(landmarks, template_points(size)), size)


def crop_box(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a square crop around a detector box, with the margin that puts
    an MTCNN box where BOX_TEMPLATE says it sits in UTKFace crops; no rotation."""
    _check(image, size)
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"crop_box: empty box {box}")
    tx0, ty0, tx1, ty1 = BOX_TEMPLATE
    side = np.sqrt((x1 - x0) / (tx1 - tx0) * (y1 - y0) / (ty1 - ty0))
    # the crop's corner so the box centre lands on the template box centre
    cx0 = (x0 + x1) / 2 - side * (tx0 + tx1) / 2
    cy0 = (y0 + y1) / 2 - side * (ty0 + ty1) / 2
    k = size / side  # crop pixel-index coords: (p + 0.5) = k * (x - cx0 + 0.5)
    matrix = np.array([[k, 0.0, k * (0.5 - cx0) - 0.5], [0.0, k, k * (0.5 - cy0) - 0.5]])
    return warp_affine(image, matrix, size)

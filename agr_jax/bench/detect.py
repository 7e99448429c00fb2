"""Photos/s of face detection on 640x480 scenes holding several faces (the `predict` section).

Scenes are UTKFace crops pasted at several sizes onto a grey canvas when a folder of crops is
given, else drawn cartoon faces (which MTCNN finds only at lowered thresholds: photos/s on
them measures the pyramid and P-Net more than the later stages).

Also the scenes the `photos` section and benchmarks/detect_quality.py build from real
material, with known faces: backgrounds cut from real photos (`shuffled_background`), crops
pasted at known boxes (`composite`), a real photo kept whole on a larger frame
(`fit_on_background`), and one-to-one matching of found boxes to known ones (`match`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from agr_jax.inference.faces import Detector

SCENE_SIZE = (480, 640)  # height, width


def cartoon_scene(height: int, width: int, seed: int, faces: int = 3) -> np.ndarray:
    """A smooth noisy background with drawn faces (skin oval, dark eyes, nose, mouth)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(noise).resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(faces):
        s = int(rng.integers(40, min(height, width) // 2))
        x, y = int(rng.integers(0, width - s)), int(rng.integers(0, height - s))
        draw.ellipse([x, y, x + s, y + int(s * 1.2)], fill=(224, 172, 140))
        for ex in (0.3, 0.7):
            draw.ellipse([x + s * ex - s * 0.08, y + s * 0.4, x + s * ex + s * 0.08,
                          y + s * 0.5], fill=(40, 30, 30))
        draw.line([x + s * 0.5, y + s * 0.5, x + s * 0.45, y + s * 0.75], fill=(150, 100, 90),
                  width=max(1, s // 25))
        draw.ellipse([x + s * 0.32, y + s * 0.85, x + s * 0.68, y + s * 0.95], fill=(150, 50, 50))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(1.0)))


def crop_scene(crops: list[np.ndarray], seed: int) -> np.ndarray:
    """640x480 grey canvas with the crops pasted, non-overlapping, at 80-200 px."""
    rng = np.random.default_rng(seed)
    canvas = np.full((*SCENE_SIZE, 3), 90, np.uint8)
    cells = [(x, y) for y in (0, 240) for x in (0, 213, 426)]  # a 3x2 grid of 213x240 cells
    for crop, k in zip(crops, rng.permutation(len(cells)), strict=False):
        s = int(rng.integers(80, 201))
        x = cells[k][0] + int(rng.integers(0, 213 - min(s, 213) + 1))
        y = cells[k][1] + int(rng.integers(0, 240 - s + 1))
        s = min(s, 640 - x)
        canvas[y:y + s, x:x + s] = np.asarray(Image.fromarray(crop).resize((s, s), Image.BILINEAR))
    return canvas


def crop_paths(folder: Path | str | None) -> list[Path]:
    """The UTKFace crops (*.jpg) in a folder, sorted; [] when there is no such folder."""
    return sorted(Path(folder).glob("*.jpg")) if folder else []


def scenes(n: int, faces_per_image: int = 4, utkface_dir: Path | None = None,
           seed: int = 0) -> tuple[list[np.ndarray], str]:
    """n scenes and what they are built from ("utkface" or "synthetic")."""
    paths = crop_paths(utkface_dir)
    if not paths:
        return [cartoon_scene(*SCENE_SIZE, seed + i, faces_per_image) for i in range(n)], \
            "synthetic"
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(paths), (n, faces_per_image), replace=len(paths) < n * faces_per_image)
    out = []
    for i, row in enumerate(picks):
        crops = [np.asarray(Image.open(paths[j]).convert("RGB")) for j in row]
        out.append(crop_scene(crops, seed + i))
    return out, "utkface"


def photos_per_second(detector: Detector, images: list[np.ndarray], batch: int = 8,
                      rounds: int = 2) -> dict[str, Any]:
    """Detection throughput over `images` in batches: one warm-up pass (compiles), then the
    best of `rounds` timed passes."""
    if not images:
        raise ValueError("photos_per_second: no images")
    batches = [images[i:i + batch] for i in range(0, len(images), batch)]
    faces = sum(len(f) for b in batches for f in detector.detect(b))  # warm-up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for b in batches:
            detector.detect(b)
        best = min(best, time.perf_counter() - start)
    return {"detector": detector.name, "photos": len(images), "batch": batch,
            "photos_per_s": len(images) / best, "faces_per_photo": faces / len(images),
            "seconds": best}


# -- scenes from real material, with known face boxes (the `photos` section, detect_quality) --

def shuffled_background(photo: np.ndarray, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Real texture and colour without a face: `photo` resized to cover (height, width), cut
    into tiles of ~1/30 of the short side, the tiles shuffled and turned, then blurred as an
    out-of-focus background is. A tile is far smaller than the photo's faces at that scale,
    so no face survives whole."""
    rng = np.random.default_rng(seed)
    tile = max(8, min(height, width) // 30)
    rows, cols = -(-height // tile), -(-width // tile)
    scale = max(rows * tile / photo.shape[0], cols * tile / photo.shape[1])
    size = (max(cols * tile, round(photo.shape[1] * scale)),
            max(rows * tile, round(photo.shape[0] * scale)))
    big = np.asarray(Image.fromarray(photo).resize(size, Image.BILINEAR))[:rows * tile,
                                                                          :cols * tile]
    tiles = big.reshape(rows, tile, cols, tile, 3).swapaxes(1, 2).reshape(-1, tile, tile, 3)
    tiles = np.stack([np.rot90(t, int(k)) for t, k in
                      zip(tiles[rng.permutation(len(tiles))], rng.integers(0, 4, len(tiles)),
                          strict=True)])
    out = tiles.reshape(rows, cols, tile, tile, 3).swapaxes(1, 2).reshape(rows * tile,
                                                                          cols * tile, 3)
    soft = Image.fromarray(np.ascontiguousarray(out[:height, :width]))
    return np.asarray(soft.filter(ImageFilter.GaussianBlur(tile / 3)))


def composite(crops: list[np.ndarray], background: np.ndarray, sides: tuple[int, int],
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The crops pasted on a copy of `background`, one per cell of a near-square grid (so
    none overlap), each resized to a side drawn from `sides`; (image, (N, 4) float32 boxes
    x0, y0, x1, y1 of the pasted squares)."""
    rng = np.random.default_rng(seed)
    height, width = background.shape[:2]
    n = len(crops)
    cols = max(1, round(np.sqrt(n * width / height)))
    rows = -(-n // cols)
    cell_h, cell_w = height // rows, width // cols
    if min(cell_h, cell_w) < sides[0]:
        raise ValueError(f"composite: {n} faces of >= {sides[0]} px do not fit in "
                         f"{width}x{height} ({cols}x{rows} cells of {cell_w}x{cell_h})")
    image, boxes = background.copy(), []
    for crop, cell in zip(crops, rng.permutation(rows * cols), strict=False):
        side = int(rng.integers(sides[0], min(sides[1], cell_h, cell_w) + 1))
        x = (cell % cols) * cell_w + int(rng.integers(0, cell_w - side + 1))
        y = (cell // cols) * cell_h + int(rng.integers(0, cell_h - side + 1))
        image[y:y + side, x:x + side] = np.asarray(
            Image.fromarray(crop).resize((side, side), Image.BILINEAR))
        boxes.append((x, y, x + side, y + side))
    return image, np.asarray(boxes, np.float32).reshape(-1, 4)


def fit_on_background(photo: np.ndarray, background: np.ndarray) -> np.ndarray:
    """`photo` resized to fit inside `background` (aspect kept), centred on it: every face
    of the photo stays in the picture, so its known face count still holds."""
    height, width = background.shape[:2]
    scale = min(height / photo.shape[0], width / photo.shape[1])
    w, h = max(1, round(photo.shape[1] * scale)), max(1, round(photo.shape[0] * scale))
    out = background.copy()
    y, x = (height - h) // 2, (width - w) // 2
    out[y:y + h, x:x + w] = np.asarray(Image.fromarray(photo).resize((w, h), Image.BILINEAR))
    return out


def match(found: np.ndarray, truth: np.ndarray, min_iou: float = 0.3) -> np.ndarray:
    """One-to-one matching of found boxes to known ones, greedily by IoU (>= min_iou);
    for each found box the index of its known box, or -1 (a false detection)."""
    found, truth = np.asarray(found, np.float64).reshape(-1, 4), \
        np.asarray(truth, np.float64).reshape(-1, 4)
    lo = np.maximum(found[:, None, :2], truth[None, :, :2])
    hi = np.minimum(found[:, None, 2:], truth[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)

    def area(b: np.ndarray) -> np.ndarray:
        return np.prod(b[:, 2:] - b[:, :2], axis=-1)

    iou = inter / np.maximum(area(found)[:, None] + area(truth)[None, :] - inter, 1e-9)
    out = np.full(len(found), -1)
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(truth))
        if iou[i, j] < min_iou:
            break
        if out[i] < 0 and j not in out:
            out[i] = j
    return out


def build_parser() -> argparse.ArgumentParser:
    """`python -m agr_jax.bench.detect [--utkface DIR] [--n 32] [--batch 8] [--detector mtcnn]`"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--utkface", type=Path, default=None, help="folder of UTKFace crops")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--detector", default="mtcnn")
    return parser


def main(argv: list[str] | None = None) -> int:
    import json

    from agr_jax.inference.detect import build_detector

    args = build_parser().parse_args(argv)
    images, source = scenes(args.n, args.faces, args.utkface)
    result = photos_per_second(build_detector(args.detector), images, args.batch)
    print(json.dumps({"scenes": source, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

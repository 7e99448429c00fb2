"""Synthetic UTKFace-format images whose labels are visible, for demos and tests.

Encoding (all robust to horizontal flip, small rotations and mild Gaussian noise):
  * gender -> background colour family: 0 = blue/cyan hues, 1 = red/orange hues.
  * race   -> shape of the central light blob: 0 circle, 1 square, 2 triangle (pointing up),
              3 horizontal stripes, 4 cross (plus sign).
  * age    -> blob size (linear in age) and the width of a centred bar at the bottom
              (linear in age), two redundant monotone cues.
Jitter: blob position, background hue/brightness, blob colour, pixel noise.

CLI: ``python -m agr_jax.data.synthetic --out DIR --num N --seed S [--size 64]``
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import simplejpeg

from agr_jax.data.utkface import format_name

log = logging.getLogger(__name__)

MIN_AGE, MAX_SYNTH_AGE = 1, 90
BASE_TIMESTAMP = 20170116123456780  # 17 digits, like UTKFace's %Y%m%d%H%M%S%f[:3]

# Extra files written by generate(with_malformed=True), all of which read_utkface rejects.
MALFORMED = {
    "24_0_1_20170116220224657 .jpg.chip.jpg": "image",  # space in the name
    "55_0_0_20170116232725357jpg.chip.jpg": "image",  # missing dot
    "39_1_20170116174525125.jpg.chip.jpg": "image",  # no race field
    "130_0_0_20170116000000001.jpg.chip.jpg": "image",  # age out of range
    "30_1_2_20170116000000002.jpg.chip.jpg": "empty",  # zero bytes
    "31_0_3_20170116000000003.jpg.chip.jpg": "garbage",  # not an image
}


def _sample_age(rng: np.random.Generator) -> int:
    # UTKFace-like: many young children, bulk 20-40, long tail to 90.
    if rng.random() < 0.15:
        return int(rng.integers(1, 12))
    return int(np.clip(round(rng.normal(35, 15)), 12, MAX_SYNTH_AGE))


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32)


def render(age: int, gender: int, race: int, rng: np.random.Generator, size: int = 64):
    """Renders one image (uint8 [size, size, 3]) encoding the labels."""
    # Background: gender hue family with jitter, vertical brightness gradient.
    hue = rng.uniform(0.52, 0.66) if gender == 0 else rng.uniform(-0.03, 0.08)
    bg = _hsv_to_rgb(hue % 1.0, rng.uniform(0.6, 0.9), rng.uniform(0.45, 0.75))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = bg[None, None, :] * (0.85 + 0.3 * yy[..., None])
    # Blob: size linear in age, centre jittered.
    frac = (np.clip(age, MIN_AGE, MAX_SYNTH_AGE) - MIN_AGE) / (MAX_SYNTH_AGE - MIN_AGE)
    r = 0.12 + 0.22 * frac  # half-extent as a fraction of the image
    cx = 0.5 + rng.uniform(-0.05, 0.05)
    cy = 0.45 + rng.uniform(-0.05, 0.05)
    dx, dy = xx - cx, yy - cy
    if race == 0:  # circle
        mask = dx**2 + dy**2 <= r**2
    elif race == 1:  # square
        mask = (np.abs(dx) <= r * 0.9) & (np.abs(dy) <= r * 0.9)
    elif race == 2:  # triangle pointing up
        mask = (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    elif race == 3:  # horizontal stripes inside a square
        inside = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        mask = inside & (np.floor((dy + r) / (2 * r) * 5) % 2 == 0)
    elif race == 4:  # cross / plus
        w = max(r * 0.35, 1.5 / size)
        mask = ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
    else:
        raise ValueError(f"race {race} not in 0-4")
    blob = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.8, 0.95), rng.uniform(0.6, 0.8)])
    img[mask] = blob.astype(np.float32)
    # Bottom bar, centred, width linear in age.
    half = 0.05 + 0.40 * frac
    bar = (np.abs(xx - 0.5) <= half) & (yy >= 0.86) & (yy <= 0.94)
    img[bar] = np.float32(0.95)
    img = img + rng.normal(0.0, 0.03, img.shape).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


def generate(
    out_dir: str | Path,
    num: int,
    seed: int = 0,
    size: int = 64,
    *,
    with_malformed: bool = False,
    quality: int = 90,
) -> list[Path]:
    """Writes ``num`` labelled JPEGs in UTKFace naming to ``out_dir``; deterministic per seed.

    About a third of the images share their timestamp with 1-2 others (like several faces
    cropped from one photo), so timestamp-grouped splits matter. With ``with_malformed``
    the files in :data:`MALFORMED` are written as well (not included in the returned list).

    Returns:
      The paths of the ``num`` valid images, sorted.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    group = 0
    while len(paths) < num:
        timestamp = str(BASE_TIMESTAMP + group)
        group += 1
        members = int(rng.choice([1, 1, 1, 1, 2, 3]))
        names: set[str] = set()
        for _ in range(min(members, num - len(paths))):
            while True:
                age, gender, race = _sample_age(rng), int(rng.integers(2)), int(rng.integers(5))
                name = format_name(age, gender, race, timestamp)
                if name not in names:
                    break
            names.add(name)
            img = render(age, gender, race, rng, size)
            path = out / name
            path.write_bytes(simplejpeg.encode_jpeg(img, quality=quality, colorspace="RGB"))
            paths.append(path)
    if with_malformed:
        sample = simplejpeg.encode_jpeg(render(30, 0, 0, rng, size), quality=quality)
        for name, kind in MALFORMED.items():
            data = {"image": sample, "empty": b"", "garbage": b"this is not an image\n"}[kind]
            (out / name).write_bytes(data)
    return sorted(paths)


def build_parser() -> argparse.ArgumentParser:
    """This entry point's flags (tests/test_docs_commands.py checks the docs against them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num", type=int, required=True, help="number of valid images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--with_malformed", action="store_true",
                        help="also write a few malformed files (for reject reporting)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num < 1 or args.size < 16:
        parser.error("--num must be >= 1 and --size >= 16")
    paths = generate(args.out, args.num, args.seed, args.size, with_malformed=args.with_malformed)
    print(f"wrote {len(paths)} images to {args.out}"
          + (f" (+{len(MALFORMED)} malformed files)" if args.with_malformed else ""))


if __name__ == "__main__":
    main()

"""facenet-pytorch's MTCNN outputs on fixed images, committed so the parity test runs without
torch: tests/test_mtcnn.py compares agr_jax's detector with them face for face.

    python -m benchmarks.mtcnn_reference [--utkface ../shared/utkface] \
        [--out tests/data/mtcnn_reference.npz]

The images are rebuilt identically wherever the test runs (`parity_images`): generated
cartoon scenes (agr_jax.bench.detect), the Grace Hopper photo matplotlib ships
(`matplotlib.cbook.get_sample_data`, a dependency of agr_jax) as is, padded and four times in
one scene, and, when ../shared/utkface is there, six UTKFace crops padded, cut by the edge
and pasted into a scene (their file names are recorded; the test skips those cases without
them). Each case stores the SHA-256 of its pixels (a changed input is then named, not
compared), the thresholds, and facenet-pytorch's boxes, probabilities and landmarks
(largest box first). Needs torch and facenet-pytorch (benchmarks/facenet_reference.py).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from agr_jax.bench.detect import cartoon_scene, crop_paths, crop_scene

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "mtcnn_reference.npz"
DEFAULT_UTKFACE = Path(__file__).resolve().parents[2] / "shared" / "utkface"
DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)
LOW_THRESHOLDS = (0.3, 0.4, 0.4)  # generated faces are cartoons: let proposals reach O-Net
UTKFACE_CROPS = 6


def pixels_sha256(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()
                          + str(image.shape).encode()).hexdigest()


def hopper() -> np.ndarray:
    """matplotlib's sample photo of Grace Hopper (512 x 600, one face)."""
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return np.asarray(Image.open(path).convert("RGB"))


def utkface_files(folder: Path) -> list[str]:
    """The crops used: every 997th of the sorted folder, as tests/test_mtcnn.py always did."""
    return [p.name for p in crop_paths(folder)[::997][:UTKFACE_CROPS]]


def utkface_cases(crops: list[np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    for i, crop in enumerate(crops[:2]):
        yield f"utkface_padded_{i}", np.pad(crop, ((40, 60), (70, 30), (0, 0)))
    yield "utkface_cut", np.pad(crops[0][:, 30:], ((30, 30), (0, 130), (0, 0)))  # left edge
    yield "utkface_scene", crop_scene(crops[2:], seed=0)


def parity_images(utkface: list[np.ndarray] | None = None
                  ) -> Iterator[tuple[str, np.ndarray, tuple[float, float, float]]]:
    """(case name, RGB uint8 image, thresholds) for every case; UTKFace ones only when
    `utkface` holds the crops named by `utkface_files`."""
    for seed, (h, w) in enumerate([(240, 320), (300, 250), (200, 200)]):
        yield f"cartoon_{seed}", cartoon_scene(h, w, seed), LOW_THRESHOLDS
    photo = hopper()
    yield "hopper", photo, DEFAULT_THRESHOLDS
    yield "hopper_padded", np.pad(photo[::2, ::2], ((80, 20), (10, 150), (0, 0))), \
        DEFAULT_THRESHOLDS
    face = photo[40:360, 80:420]  # the head and shoulders
    yield "hopper_scene", crop_scene([face] * 4, seed=1), DEFAULT_THRESHOLDS
    for name, image in utkface_cases(utkface) if utkface else ():
        yield name, image, DEFAULT_THRESHOLDS


def read_crops(folder: Path, names: list[str]) -> list[np.ndarray]:
    return [np.asarray(Image.open(folder / n).convert("RGB")) for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--utkface", type=Path, default=DEFAULT_UTKFACE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from benchmarks.facenet_reference import load_reference_mtcnn, reference_detect

    names = utkface_files(args.utkface)
    if len(names) < UTKFACE_CROPS:
        print(f"fewer than {UTKFACE_CROPS} UTKFace crops in {args.utkface}: generated and "
              "packaged images only", file=sys.stderr)
        names = []
    reference, stand_in = load_reference_mtcnn()
    out: dict[str, np.ndarray] = {"utkface_files": np.asarray(names, dtype=str)}
    for name, image, thresholds in parity_images(read_crops(args.utkface, names)):
        reference.thresholds = list(thresholds)
        boxes, probs, points = reference_detect(reference, image)
        out.update({f"{name}/sha256": np.asarray(pixels_sha256(image)),
                    f"{name}/thresholds": np.asarray(thresholds, np.float64),
                    f"{name}/boxes": boxes, f"{name}/probs": probs, f"{name}/landmarks": points})
        print(f"{name}: {image.shape[1]}x{image.shape[0]}, {len(boxes)} faces")
    out["nms_stand_in"] = np.asarray(stand_in)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}{' (reference NMS: pure-torch stand-in)' if stand_in else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

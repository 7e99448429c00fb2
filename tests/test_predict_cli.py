"""The predict CLI's library side: folders and globs, CSV / JSON lines, annotation, exit
status; video (frames, IoU tracks) and the camera path, both on a generated video file."""

import csv
import io
import json

import numpy as np
import pytest
from inference_fakes import (
    ScriptedDetector,
    face,
    fast_predictor,
    install_fake_align,
    photo,
    tiny_bundle,
)
from PIL import Image

from agr_jax.inference import run as run_lib
from agr_jax.inference import video
from agr_jax.inference.predictor import RECORD_FIELDS

cv2 = pytest.importorskip("cv2", reason="pip install 'opencv-python-headless>=4.8,<5'")


class MovingFaces:
    """Two faces per image: one drifting 3 px right per image seen, one fixed."""

    name = "mtcnn"

    def __init__(self):
        self.seen = 0

    def detect(self, images):
        out = []
        for _ in images:
            x = 10 + 3 * self.seen
            out.append([face(x, 10, x + 40, 50), face(80, 40, 120, 80, score=0.9)])
            self.seen += 1
        return out


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture
def video_file(tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    for k in range(12):
        writer.write(photo(0, 96, 128, seed=k)[:, :, ::-1].copy())
    writer.release()
    assert path.stat().st_size > 0
    return path


def _folder(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for k in range(3):
        Image.fromarray(photo(k % 2, seed=k)).save(tmp_path / "in" / "sub" / f"p{k}.png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    (tmp_path / "in" / "notes.txt").write_text("not an image suffix: skipped, counted")
    return tmp_path / "in"


def test_folder_to_csv_with_annotations_and_exit_status(bundle, tmp_path, monkeypatch, capsys):
    install_fake_align(monkeypatch)
    p = fast_predictor(bundle, detector=ScriptedDetector([[face(10, 10, 70, 70)], []]))
    folder = _folder(tmp_path)
    out = tmp_path / "out.csv"
    status = run_lib.run(p, [str(folder)], detect="mtcnn", out=str(out),
                         annotate_dir=str(tmp_path / "ann"))
    assert status == 1  # broken.jpg failed
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) [:len(RECORD_FIELDS)] == list(RECORD_FIELDS)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["broken.jpg"]["reason"].startswith("error: truncated")
    assert by_name["p1.png"]["reason"] == "no face found"
    assert json.loads(by_name["p0.png"]["box"]) == [10, 10, 70, 70]
    assert set(json.loads(by_name["p0.png"]["gender_prob"])) == {"male", "female"}
    assert len(rows) == 4
    ann = tmp_path / "ann"  # the folder structure below the inputs' common folder kept
    annotated = sorted(x.relative_to(ann).as_posix() for x in ann.rglob("*") if x.is_file())
    assert annotated == ["sub/p0.annotated.png", "sub/p1.annotated.png", "sub/p2.annotated.png"]
    drawn = np.asarray(Image.open(ann / "sub" / "p0.annotated.png"))
    assert tuple(drawn[40, 10]) == (40, 220, 60)  # the box's left edge, in the OK colour
    summary = capsys.readouterr().err
    assert "1 failed inputs" in summary and "1 folder files skipped" in summary


def test_glob_to_jsonl_all_good_exits_0(bundle, tmp_path):
    folder = _folder(tmp_path)
    out = tmp_path / "o.jsonl"
    status = run_lib.run(fast_predictor(bundle), [str(folder / "**" / "*.png")], detect="none",
                         out=str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert status == 0 and len(rows) == 3 and all(r["age"] is not None for r in rows)
    with pytest.raises(ValueError, match="expected a .jsonl or .csv"):
        run_lib.run(fast_predictor(bundle), [], detect="none", out=str(tmp_path / "x.txt"))


def test_video_frames_tracks_and_annotated_copy(bundle, tmp_path, monkeypatch, video_file):
    install_fake_align(monkeypatch)
    out = tmp_path / "v.jsonl"
    status = run_lib.run(fast_predictor(bundle, detector=MovingFaces()), [str(video_file)],
                         detect="mtcnn", out=str(out), every=2, annotate_dir=str(tmp_path))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    frames = [r for r in rows if r["kind"] == "frame"]
    tracks = [r for r in rows if r["kind"] == "track"]
    assert status == 0
    assert sorted({r["frame"] for r in frames}) == [0, 2, 4, 6, 8, 10]
    assert len(frames) == 12 and len(tracks) == 2
    for t in tracks:
        assert t["frames"] == [0, 10] and t["frame_count"] == 6
        mine = [r for r in frames if r["track"] == t["track"]]
        assert t["age"] == pytest.approx(np.mean([r["age"] for r in mine]), abs=0.06)
        assert t["gender"] == max(t["gender_prob"], key=t["gender_prob"].get)
    copy = tmp_path / "clip.annotated.mp4"
    capture = cv2.VideoCapture(str(copy))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()


def test_camera_without_display_streams_json_lines(bundle, monkeypatch, video_file, capsys):
    install_fake_align(monkeypatch)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    status = run_lib.run(fast_predictor(bundle, detector=MovingFaces()), [], detect="mtcnn",
                         camera=str(video_file), every=3)
    rows = [json.loads(line) for line in io.StringIO(capsys.readouterr().out)]
    assert status == 0
    assert [r["frame"] for r in rows if r["kind"] == "frame"] == [0, 0, 3, 3, 6, 6, 9, 9]
    assert sum(r["kind"] == "track" for r in rows) == 2
    assert run_lib.camera_source("0") == 0


def test_unopenable_video_is_a_failed_input(bundle, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"no video here")
    out = tmp_path / "b.jsonl"
    assert run_lib.run(fast_predictor(bundle), [str(bad)], detect="none", out=str(out)) == 1
    assert "cannot open" in json.loads(out.read_text())["reason"]


class StillFace:
    """The same face in every frame."""

    name = "mtcnn"

    def detect(self, images):
        return [[face(30, 20, 90, 80)] for _ in images]


def test_a_still_face_sampled_every_15_frames_is_one_track(bundle, tmp_path, monkeypatch):
    """The tracker's gap counts the frames it is given: 100 frames sampled every 15th are 7
    frames 15 apart, one track (counted in raw frames, each would start a new one)."""
    install_fake_align(monkeypatch)
    path = tmp_path / "still.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (128, 96))
    for k in range(100):
        writer.write(photo(0, 96, 128, seed=k % 3)[:, :, ::-1].copy())
    writer.release()
    out = tmp_path / "still.jsonl"
    p = fast_predictor(bundle, detector=StillFace())
    assert run_lib.run(p, [str(path)], detect="mtcnn", out=str(out), every=15) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    tracks = [r for r in rows if r["kind"] == "track"]
    assert len(tracks) == 1 and tracks[0]["frames"] == [0, 90]
    assert tracks[0]["frame_count"] == 7 and tracks[0]["age"] is not None


def test_tracker_gap_is_in_updates_and_expired_tracks_are_not_matched():
    tracker = video.IouTracker(max_gap=2)
    row = {"box": [0, 0, 10, 10]}
    for frame in (0, 100, 200):
        tracker.update(frame, [dict(row)])
    assert len(tracker.tracks) == 1
    for frame in (201, 202, 203):  # three updates without the face: past max_gap
        tracker.update(frame, [])
    tracker.update(204, [dict(row)])
    assert len(tracker.tracks) == 2

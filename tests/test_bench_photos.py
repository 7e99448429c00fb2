"""The `photos` benchmark section's harness (agr_jax/bench/photos.py) on tiny inputs: the
phone JPEG's orientation, the mixed folder's sizes, compile counting, the camera video and
the targets' verdicts. Nothing here is timed against a figure."""

from __future__ import annotations

import io

import numpy as np
import pytest
from inference_fakes import ScriptedDetector, face, fast_predictor, install_fake_align, tiny_bundle
from PIL import Image

from agr_jax.bench import photos


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_phone_jpeg_is_stored_turned_and_decodes_upright(orientation):
    image = np.zeros((60, 80, 3), np.uint8)
    image[:20, :20] = 255  # a white top-left corner shows which way is up
    data = photos.jpeg(image, orientation=orientation)
    stored = Image.open(io.BytesIO(data))
    assert stored.size == ((60, 80) if orientation in (6, 8) else (80, 60))
    assert stored.getexif().get(0x0112, 1) == orientation
    upright = photos.decode_upright(data)
    assert upright.shape == (60, 80, 3)
    assert upright[:20, :20].mean() > 200 and upright[40:, 60:].mean() < 50
    with pytest.raises(ValueError, match="orientation"):
        photos.jpeg(image, orientation=5)


def test_the_mixed_folder_has_thirty_sizes_from_320x240_to_4000x3000():
    sizes = photos.mixed_sizes()
    assert len(set(sizes)) == 30 and sizes[0] == (320, 240) and sizes[-1] == (4000, 3000)
    longs = [max(s) for s in sizes]
    assert longs == sorted(longs)
    assert len({round(w / h, 2) for w, h in sizes}) == 7


class _CountingDetector:
    """Compiles once per image size it has not seen (as a jitted detector per shape)."""

    def __init__(self):
        self.compiles, self.seen = 0, set()


class _FakePredictor:
    """Its model "compiles" once per call size (a bucket), its detector once per image size."""

    def __init__(self):
        self.det = _CountingDetector()
        self.traces, self.call_sizes = 0, set()

    def detector(self, name):
        return self.det

    def __call__(self, items, detect):
        if len(items) not in self.call_sizes:
            self.call_sizes.add(len(items))
            self.traces += 1
        for data in items:
            size = photos.decode_upright(data).shape
            if size not in self.det.seen:
                self.det.seen.add(size)
                self.det.compiles += 1
        return [{"face": 0} for _ in items]


def test_mixed_folder_counts_the_programs_its_first_pass_compiles():
    def jpeg(w, h):
        return photos.jpeg(np.zeros((h, w, 3), np.uint8))

    folder = [jpeg(40, 30), jpeg(30, 40), jpeg(40, 30), jpeg(64, 36)]
    out = photos.mixed_folder(_FakePredictor(), folder, jpeg(40, 30), "fake", chunk=2)
    assert out["photos"] == 4
    assert out["programs_compiled_in_first_pass"] == 2  # 30x40 and 64x36 were new
    assert out["model_programs_compiled_in_first_pass"] == 1  # calls of 2 after one of 1
    assert out["programs_compiled_total"] == 3 and out["programs_bound"] is None
    timed = photos.predictor_photos_s(_FakePredictor(), folder, "fake", 0.01, chunk=3)
    assert timed["faces_found"] == 4


def test_the_camera_video_keeps_each_scripted_face_on_one_track(tmp_path, monkeypatch):
    pytest.importorskip("cv2", reason="pip install 'opencv-python-headless<5'")
    crops = []
    for k in range(3):
        path = tmp_path / f"crop{k}.jpg"
        Image.fromarray(np.full((60, 60, 3), 60 * k, np.uint8)).save(path)
        crops.append(path)
    background = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    video = photos.write_video(tmp_path / "camera.avi", crops, background)
    from agr_jax.inference.video import frames

    shapes = [f.shape for _, f in frames(str(video))]
    assert len(shapes) == photos.CAMERA_FRAMES and shapes[0] == (480, 640, 3)
    install_fake_align(monkeypatch)
    detector = ScriptedDetector([[face(100, 100, 220, 220), face(400, 200, 520, 320)]])
    predictor = fast_predictor(tiny_bundle(), detector=detector)
    out = photos.camera_fps(predictor, str(video), "mtcnn")
    assert out["frames"] == out["frames_with_rows"] == photos.CAMERA_FRAMES
    assert out["tracks"] == 2 and out["frames_s"] > 0


def test_targets_judge_each_detector_against_the_issue_and_the_peer():
    def size(photos_s):
        return {"photos_s": photos_s, "s_per_photo": 1 / photos_s}

    section = {
        "sizes": {"yunet": {"640x480": size(30.0), "1920x1440": size(12.0),
                            "4000x3000": size(5.0)},
                  "mtcnn": {"640x480": size(8.0), "1920x1440": size(2.0),
                            "4000x3000": size(2.0)}},
        "mixed": {"yunet": {"ratio": 1.2}, "mtcnn": {"ratio": 3.0}},
        "camera": {"yunet": {"frames_s": 40.0}},
        "peer": {"640x480": size(25.0)},
    }
    got = photos.targets(section)
    assert got["yunet"]["640x480 vs peer"]["value"] == pytest.approx(1.2)
    assert all(t["met"] for t in got["yunet"].values())
    assert got["mtcnn"]["640x480 vs peer"]["met"] is False
    assert got["mtcnn"]["4000x3000 s/photo"]["value"] == pytest.approx(0.5)
    assert got["mtcnn"]["4000x3000 s/photo"]["met"] is False
    assert got["mtcnn"]["camera frames/s"]["met"] is None  # not measured
    del section["peer"]
    assert photos.targets(section)["yunet"]["640x480 vs peer"]["met"] is None


def test_the_suite_runs_the_section_by_name_and_prints_its_lines(tmp_path):
    from agr_jax.bench import sections, suite

    assert suite.get_suite("cpu", sections=["photos"]).sections == ("photos",)
    with pytest.raises(FileNotFoundError, match="no UTKFace crops"):
        sections.photos(tmp_path, tmp_path, suite.get_suite("cpu"))
    size = {"photos_s": 4.0, "s_per_photo": 0.25, "faces_found": 7}
    section = {"cpu_count": 2, "known_faces": dict.fromkeys(photos.SIZES, 8),
               "sizes": {"yunet": dict.fromkeys(photos.SIZES, size)},
               "peer": dict.fromkeys(photos.SIZES, size),
               "mixed": {"yunet": {"photos": 30, "first_pass_s_per_photo": 0.3,
                                   "compiled_s_per_photo": 0.2, "ratio": 1.5,
                                   "programs_compiled_in_first_pass": 3,
                                   "programs_compiled_total": 4, "programs_bound": 40}},
               "camera": {"yunet": {"frames_s": 30.0, "tracks": 3}},
               "first_record": {"yunet": {"cold": {"first_record_s": 9.0},
                                          "warm": {"first_record_s": 3.0}}},
               "skipped": {"mtcnn": "why"}}
    section["targets"] = photos.targets(section)
    text = suite.format_report({
        "meta": {"date": "d", "machine": "m", "device_kind": "cpu", "jax": "0"}, "peak": {},
        "step": {}, "targets": {}, "skipped": {}, "photos": section})
    assert "yunet 4.00 (0.250 s, 7/8); peer 4.00" in text
    assert "3 detector programs compiled in it, 4 in all (bound 40)" in text
    assert "cold cache 9.0 s, warm 3.0 s" in text and "skipped mtcnn: why" in text
    assert "target yunet 4000x3000 s/photo: 0.250 (target 0.25) met" in text

"""`--annotate DIR`: copies keep the inputs' folder structure, so same-named files in
different folders (photos/a/x.jpg, photos/b/x.jpg) each get their own annotated copy."""

from pathlib import Path

import numpy as np
from PIL import Image

from agr_jax.inference import annotate
from agr_jax.inference import run as run_lib

OUT = Path("ann")


def test_copies_sit_below_the_inputs_common_folder(tmp_path):
    a, b = str(tmp_path / "photos/a/x.jpg"), str(tmp_path / "photos/b/x.jpg")
    clip = str(tmp_path / "photos/clip.mp4")
    assert annotate.copy_paths(OUT, [a, b], [clip]) == {
        a: OUT / "a/x.annotated.png", b: OUT / "b/x.annotated.png",
        clip: OUT / "clip.annotated.mp4"}
    assert annotate.copy_paths(OUT, [a]) == {a: OUT / "x.annotated.png"}  # one input: its name
    assert annotate.copy_paths(OUT, []) == {}


def test_relative_and_absolute_inputs_and_shared_stems(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jpg, png = "photos/a/x.jpg", str(tmp_path / "photos/a/x.png")
    other = "photos/b/y.jpg"
    assert annotate.copy_paths(OUT, [jpg, png, other]) == {
        jpg: OUT / "a/x.jpg.annotated.png", png: OUT / "a/x.png.annotated.png",
        other: OUT / "b/y.annotated.png"}


class BoxEveryImage:
    """A predictor stand-in: one face per image, its box across the whole picture."""

    def __call__(self, paths, detect):
        return [{"path": p, "box": [0, 0, 31, 31], "age": 30.0, "gender": "male",
                 "race": "White"} for p in paths]


def test_same_named_photos_in_two_folders_both_get_a_copy(tmp_path):
    for folder, shade in (("a", 0), ("b", 255)):
        (tmp_path / "photos" / folder).mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), shade, np.uint8)).save(
            tmp_path / "photos" / folder / "x.png")
    ann = tmp_path / "ann"
    status = run_lib.run(BoxEveryImage(), [str(tmp_path / "photos")], detect="none",
                         out=str(tmp_path / "o.jsonl"), annotate_dir=str(ann))
    assert status == 0
    copies = sorted(p.relative_to(ann).as_posix() for p in ann.rglob("*") if p.is_file())
    assert copies == ["a/x.annotated.png", "b/x.annotated.png"]
    for folder, shade in (("a", 0), ("b", 255)):  # each copy is drawn on its own photo
        drawn = np.asarray(Image.open(ann / folder / "x.annotated.png"))
        assert tuple(drawn[16, 0]) == annotate.OK and tuple(drawn[16, 16]) == (shade,) * 3

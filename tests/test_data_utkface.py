"""UTKFace name parsing, folder/archive reading with rejects, timestamp-grouped splits."""

import io
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from agr_jax.data import utkface
from agr_jax.data.utkface import InvalidName, UTKLabel, parse_name, read_utkface

REAL_MALFORMED = [
    "24_0_1_20170116220224657 .jpg.chip.jpg",
    "55_0_0_20170116232725357jpg.chip.jpg",
    "39_1_20170116174525125.jpg.chip.jpg",
    "61_1_20170109142408075.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
]
SHARED_UTKFACE = Path(__file__).resolve().parents[1].parent / "shared" / "utkface"


def _jpeg(value: int = 128, size: int = 16) -> bytes:
    img = np.full((size, size, 3), value, np.uint8)
    return simplejpeg.encode_jpeg(img, quality=90)


# --------------------------------------------------------------------------- parse_name


@pytest.mark.parametrize(
    "name, expected",
    [
        ("100_0_0_20170112213500903.jpg.chip.jpg", (100, 0, 0, "20170112213500903")),
        ("1_1_4_20161221193012312.jpg.chip.jpg", (1, 1, 4, "20161221193012312")),
        ("0_1_2_20170109.jpg", (0, 1, 2, "20170109")),
        ("some/dir/26_0_3_20170119.jpg.chip.jpg", (26, 0, 3, "20170119")),
        ("116_0_0_1.jpg", (116, 0, 0, "1")),
    ],
)
def test_parse_valid(name, expected):
    label = parse_name(name)
    assert (label.age, label.gender, label.race, label.timestamp) == expected
    assert label.file_name == name.rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    "name, reason_part",
    [
        (REAL_MALFORMED[0], "whitespace"),
        (REAL_MALFORMED[1], "missing '.'"),
        (REAL_MALFORMED[2], "race field missing"),
        (REAL_MALFORMED[3], "race field missing"),
        ("117_0_0_20170116.jpg.chip.jpg", "age 117"),
        ("30_2_0_20170116.jpg.chip.jpg", "gender 2"),
        ("30_0_5_20170116.jpg.chip.jpg", "race 5"),
        ("30_0_0_20170116.png", "not a .jpg"),
        ("30_0_0_20170116.jpeg", "not a .jpg"),
        ("30_0_0_2017011x.jpg", "not all digits"),
        ("-1_0_0_20170116.jpg", "not all digits"),
        ("30_0_0_1_2_20170116.jpg", "6 fields"),
        (".jpg", "not a .jpg"),
        ("", "empty"),
    ],
)
def test_parse_invalid(name, reason_part):
    with pytest.raises(InvalidName) as err:
        parse_name(name)
    assert reason_part in err.value.reason
    assert isinstance(err.value, ValueError)


@settings(max_examples=200, deadline=None)
@given(
    age=st.integers(0, utkface.MAX_AGE),
    gender=st.integers(0, 1),
    race=st.integers(0, 4),
    ts=st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    chip=st.booleans(),
)
def test_parse_roundtrip_property(age, gender, race, ts, chip):
    name = utkface.format_name(age, gender, race, ts, chip=chip)
    assert parse_name(name) == UTKLabel(name, age, gender, race, ts)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_arbitrary_text_only_raises_invalid_name(text):
    try:
        label = parse_name(text)
    except InvalidName:
        return
    assert 0 <= label.age <= utkface.MAX_AGE and label.gender in (0, 1) and 0 <= label.race < 5


# --------------------------------------------------------------------------- reading


def _write_folder(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "30_0_0_20170101000000001.jpg.chip.jpg": _jpeg(10),
        "40_1_1_20170101000000002.jpg.chip.jpg": _jpeg(20),
        "5_0_2_20170101000000002.jpg": _jpeg(30),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "20_0_1_20170101000000003.jpg.chip.jpg").write_bytes(b"")  # zero bytes
    (folder / "21_1_3_20170101000000004.jpg.chip.jpg").write_bytes(b"<html>not a jpeg</html>")
    (folder / REAL_MALFORMED[0]).write_bytes(_jpeg())
    (folder / "notes.txt").write_text("hello")
    # A truncated JPEG.
    (folder / "22_1_4_20170101000000005.jpg.chip.jpg").write_bytes(_jpeg(40, 64)[:200])
    return files


def test_read_folder_reports_every_reject(tmp_path):
    files = _write_folder(tmp_path / "utk")
    result = read_utkface(tmp_path / "utk")
    assert [lab.file_name for lab, _ in result.examples] == sorted(files)
    assert all(data == files[lab.file_name] for lab, data in result.examples)
    reasons = {r.file_name: r.reason for r in result.rejects}
    assert reasons["20_0_1_20170101000000003.jpg.chip.jpg"] == utkface.EMPTY
    assert reasons["21_1_3_20170101000000004.jpg.chip.jpg"].startswith(utkface.UNDECODABLE)
    assert reasons["22_1_4_20170101000000005.jpg.chip.jpg"].startswith(utkface.UNDECODABLE)
    assert reasons[REAL_MALFORMED[0]].startswith(utkface.BAD_NAME)
    assert reasons["notes.txt"].startswith(utkface.BAD_NAME)
    assert len(result.rejects) == 5
    summary = result.summary()
    assert "read 3 images, rejected 5" in summary and "2 bad name" in summary
    assert any(REAL_MALFORMED[0] in line for line in result.report_lines())


def test_read_without_decode_check_keeps_undecodable(tmp_path):
    _write_folder(tmp_path / "utk")
    result = read_utkface(tmp_path / "utk", check_decode=False)
    assert len(result.examples) == 5  # garbage and truncated kept; zero bytes still rejected
    assert {r.reason for r in result.rejects} == {utkface.EMPTY, *(
        r.reason for r in result.rejects if r.reason.startswith(utkface.BAD_NAME))}


def test_read_nested_folder(tmp_path):
    files = _write_folder(tmp_path / "top" / "UTKFace")
    result = read_utkface(tmp_path / "top")
    assert [lab.file_name for lab in result.labels] == sorted(files)


def test_png_and_gray_and_cmyk_are_converted_or_kept(tmp_path):
    folder = tmp_path / "utk"
    folder.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), (200, 10, 10)).save(buf, format="PNG")
    (folder / "30_0_0_20170101000000001.jpg.chip.jpg").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.new("CMYK", (12, 12), (0, 50, 50, 0)).save(buf, format="JPEG")
    (folder / "31_0_0_20170101000000002.jpg.chip.jpg").write_bytes(buf.getvalue())
    gray = simplejpeg.encode_jpeg(
        np.full((12, 12, 1), 90, np.uint8), colorspace="GRAY", colorsubsampling="Gray"
    )
    (folder / "32_0_0_20170101000000003.jpg.chip.jpg").write_bytes(gray)
    result = read_utkface(folder)
    assert not result.rejects
    assert len(result.examples) == 3
    converted = dict(result.converted)
    # simplejpeg decodes CMYK and gray JPEGs to RGB itself: only the PNG is converted.
    assert set(converted) == {"30_0_0_20170101000000001.jpg.chip.jpg"}
    assert "PNG" in converted["30_0_0_20170101000000001.jpg.chip.jpg"]
    for _, data in result.examples:
        assert simplejpeg.decode_jpeg(data, colorspace="RGB").shape == (12, 12, 3)
    assert dict((lab.file_name, d) for lab, d in result.examples)[
        "32_0_0_20170101000000003.jpg.chip.jpg"] == gray
    assert "converted 1" in result.summary()


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_read_tar_gz_single_and_multipart(tmp_path):
    a, b, c = _jpeg(10), _jpeg(20), _jpeg(30)
    single = _tar(tmp_path / "UTKFace.tar.gz", {
        "UTKFace/30_0_0_20170101000000001.jpg.chip.jpg": a,
        "UTKFace/40_1_1_20170101000000002.jpg.chip.jpg": b,
        "UTKFace/" + REAL_MALFORMED[1]: c,
    })
    result = read_utkface(single)
    assert [lab.age for lab in result.labels] == [30, 40]
    assert [r.file_name for r in result.rejects] == [REAL_MALFORMED[1]]

    p1 = _tar(tmp_path / "part1.tar.gz", {"part1/1_0_0_20170101000000001.jpg": a})
    p2 = _tar(tmp_path / "part2.tar.gz", {
        "part2/2_0_0_20170101000000002.jpg": b,
        "part2/1_0_0_20170101000000001.jpg": a,  # duplicate name, same bytes
    })
    p3 = _tar(tmp_path / "part3.tar.gz", {
        "part3/deep/3_1_1_20170101000000003.jpg": c,
        "part3/2_0_0_20170101000000002.jpg": c,  # duplicate name, different bytes
    })
    result = read_utkface([p1, p2, p3])
    assert [lab.file_name for lab in result.labels] == [
        "1_0_0_20170101000000001.jpg", "2_0_0_20170101000000002.jpg",
        "3_1_1_20170101000000003.jpg"]
    assert dict((lab.age, d) for lab, d in result.examples)[2] == b  # first one kept
    dups = [r for r in result.rejects if r.reason.startswith(utkface.DUPLICATE)]
    assert len(dups) == 2
    assert any("identical bytes" in r.reason for r in dups)
    assert any("different bytes" in r.reason for r in dups)


def test_read_mixed_folder_and_archive(tmp_path):
    files = _write_folder(tmp_path / "utk")
    archive = _tar(tmp_path / "extra.tar.gz", {"x/50_1_0_20170101000000009.jpg": _jpeg(5)})
    result = read_utkface([tmp_path / "utk", archive])
    assert len(result.examples) == len(files) + 1


def test_read_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_utkface(tmp_path / "nope")


# --------------------------------------------------------------------------- splits


def _labels(n: int, seed: int = 0) -> list[UTKLabel]:
    rng = np.random.default_rng(seed)
    out = []
    ts = 0
    while len(out) < n:
        ts += 1
        for k in range(int(rng.integers(1, 4))):
            out.append(UTKLabel(f"{k}_{ts}", int(rng.integers(1, 90)), 0, 0, str(ts)))
    return out[:n]


def test_split_grouped_deterministic_and_ratios():
    labels = _labels(3000)
    splits = utkface.split_by_timestamp(labels, (0.8, 0.1, 0.1), seed=3)
    assert splits == utkface.split_by_timestamp(labels, (0.8, 0.1, 0.1), seed=3)
    assert splits != utkface.split_by_timestamp(labels, (0.8, 0.1, 0.1), seed=4)
    all_idx = sorted(i for idx in splits.values() for i in idx)
    assert all_idx == list(range(len(labels)))
    stamps = {k: {labels[i].timestamp for i in idx} for k, idx in splits.items()}
    assert not stamps["train"] & stamps["validation"]
    assert not stamps["train"] & stamps["test"]
    assert not stamps["validation"] & stamps["test"]
    for name, ratio in zip(utkface.SPLITS, (0.8, 0.1, 0.1), strict=True):
        assert abs(len(splits[name]) / len(labels) - ratio) < 0.01


@pytest.mark.parametrize("ratios", [(0.5, 0.5, 0.0), (0.0, 0.0, 1.0), (0.7, 0.0, 0.3)])
def test_split_zero_ratios(ratios):
    labels = _labels(200)
    splits = utkface.split_by_timestamp(labels, ratios, seed=0)
    for name, ratio in zip(utkface.SPLITS, ratios, strict=True):
        if ratio == 0:
            assert splits[name] == []
    assert sum(len(v) for v in splits.values()) == 200


@pytest.mark.parametrize("ratios", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.1, -0.1, 0.0)])
def test_split_bad_ratios(ratios):
    with pytest.raises(ValueError):
        utkface.split_by_timestamp(_labels(10), ratios)


def test_filter_age():
    labels = _labels(300)
    keep = utkface.filter_age(labels, (10, 65))
    assert all(10 <= labels[i].age <= 65 for i in keep)
    assert len(keep) == sum(10 <= lab.age <= 65 for lab in labels)
    assert utkface.filter_age(labels, None) == list(range(300))
    with pytest.raises(ValueError):
        utkface.filter_age(labels, (50, 10))


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(not SHARED_UTKFACE.is_dir(), reason="real UTKFace crops not present")
def test_real_utkface_malformed_names(monkeypatch):
    # The name-only scan must not decode (that is what keeps it cheap on 18,951 files);
    # counted here rather than timed, since a wall-clock bound measures the host's load.
    decodes = []
    real_check = utkface._check_image
    monkeypatch.setattr(utkface, "_check_image", lambda data: decodes.append(1) or real_check(data))
    result = read_utkface(SHARED_UTKFACE, check_decode=False)
    assert decodes == []
    rejected = {r.file_name for r in result.rejects}
    assert set(REAL_MALFORMED) <= rejected
    kinds = Counter(r.reason.split(":", 1)[0] for r in result.rejects)
    assert kinds[utkface.BAD_NAME] >= len(REAL_MALFORMED)
    assert len(result.examples) > 18_000
    on_disk = sum(1 for p in SHARED_UTKFACE.rglob("*") if p.is_file())
    assert len(result.examples) + len(result.rejects) == on_disk  # every file accounted for


# --------------------------------------------------------------------------- bad input kinds


def _noise_jpeg(size: int = 48, seed: int = 0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return simplejpeg.encode_jpeg(img, quality=90)


def _lenient_only_jpeg() -> bytes:
    """A JPEG with one corrupted byte that PIL still decodes (a damaged picture) but
    libjpeg-turbo's strict mode rejects: the case a lenient reader would keep."""
    good = _noise_jpeg()
    for pos in range(len(good) // 2, len(good) - 4):
        data = good[:pos] + b"\xff" + good[pos + 1 :]
        try:
            simplejpeg.decode_jpeg(data, strict=True)
        except ValueError as e:
            if "Corrupt JPEG data" not in str(e):
                continue
            with Image.open(io.BytesIO(data)) as img:
                img.load()  # PIL accepts it
            return data
    raise AssertionError("no lenient-only corruption found")


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _png(mode: str, color) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (12, 12), color).save(buf, format="PNG")
    return buf.getvalue()


def test_corrupt_jpeg_is_rejected_not_repaired(tmp_path):
    name = "30_0_0_20170101000000001.jpg.chip.jpg"
    result = read_utkface(_write(tmp_path, {name: _lenient_only_jpeg()}))
    assert not result.examples and not result.converted
    (reject,) = result.rejects
    assert reject.file_name == name
    assert reject.reason.startswith(f"{utkface.UNDECODABLE}: corrupt or truncated JPEG")
    assert "Corrupt JPEG data" in reject.reason


@pytest.mark.parametrize(
    "name, reason",
    [
        ("117_0_0_20170101000000001.jpg.chip.jpg", "age 117 outside 0-116"),
        ("30_2_0_20170101000000002.jpg.chip.jpg", "gender 2 not 0 or 1"),
        ("30_0_5_20170101000000003.jpg.chip.jpg", "race 5 outside 0-4"),
    ],
)
def test_labels_out_of_range_are_rejected_by_name(tmp_path, name, reason):
    result = read_utkface(_write(tmp_path, {name: _jpeg()}))
    assert [(r.file_name, r.reason) for r in result.rejects] == [
        (name, f"{utkface.BAD_NAME}: {reason}")
    ]


def test_gray_png_and_rgba_png_are_converted(tmp_path):
    files = {
        "30_0_0_20170101000000001.jpg.chip.jpg": _png("L", 100),
        "31_0_0_20170101000000002.jpg.chip.jpg": _png("RGBA", (10, 200, 10, 128)),
    }
    result = read_utkface(_write(tmp_path, files))
    assert dict(result.converted) == {
        "30_0_0_20170101000000001.jpg.chip.jpg": "PNG L converted to RGB JPEG (quality 95)",
        "31_0_0_20170101000000002.jpg.chip.jpg": "PNG RGBA converted to RGB JPEG (quality 95)",
    }
    assert all(data[:3] == b"\xff\xd8\xff" for _, data in result.examples)


def test_kept_gray_and_cmyk_jpegs_decode_to_rgb_in_the_pipeline(tmp_path):
    from agr_jax.data import pipeline

    buf = io.BytesIO()
    Image.new("CMYK", (20, 20), (0, 50, 50, 0)).save(buf, format="JPEG")
    gray = simplejpeg.encode_jpeg(
        np.full((20, 20, 1), 90, np.uint8), colorspace="GRAY", colorsubsampling="Gray"
    )
    result = read_utkface(_write(tmp_path, {
        "30_0_0_20170101000000001.jpg.chip.jpg": buf.getvalue(),
        "31_0_0_20170101000000002.jpg.chip.jpg": gray,
    }))
    assert len(result.examples) == 2 and not result.converted and not result.rejects
    for _, data in result.examples:
        img = pipeline.decode_image(data, 16)
        assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    gray_img = pipeline.decode_image(gray, 16)
    assert np.all(gray_img[..., 0] == gray_img[..., 1])


def test_byte_identical_images_same_labels_keep_the_first(tmp_path):
    data = _jpeg(77)
    files = {
        "30_0_0_20170101000000001.jpg.chip.jpg": data,
        "30_0_0_20170101000000009.jpg.chip.jpg": data,  # same person/labels, another stamp
        "40_1_1_20170101000000002.jpg.chip.jpg": _jpeg(20),
    }
    result = read_utkface(_write(tmp_path, files))
    assert [lab.file_name for lab in result.labels] == [
        "30_0_0_20170101000000001.jpg.chip.jpg", "40_1_1_20170101000000002.jpg.chip.jpg"]
    (reject,) = result.rejects
    assert reject.file_name == "30_0_0_20170101000000009.jpg.chip.jpg"
    assert reject.reason.startswith(f"{utkface.DUPLICATE_IMAGE}: same bytes as "
                                    "'30_0_0_20170101000000001.jpg.chip.jpg' (same labels")
    assert "1 duplicate image" in result.summary()


def test_byte_identical_images_with_conflicting_labels_are_all_rejected(tmp_path):
    # As in the real crops: 10_0_0_20170110220644705 and 13_0_0_20170110232519225 are one file.
    data = _jpeg(77)
    files = {"10_0_0_20170110220644705.jpg.chip.jpg": data,
             "13_0_0_20170110232519225.jpg.chip.jpg": data,
             "40_1_1_20170101000000002.jpg.chip.jpg": _jpeg(20)}
    result = read_utkface(_write(tmp_path, files))
    assert [lab.age for lab in result.labels] == [40]
    reasons = {r.file_name: r.reason for r in result.rejects}
    assert set(reasons) == {"10_0_0_20170110220644705.jpg.chip.jpg",
                            "13_0_0_20170110232519225.jpg.chip.jpg"}
    assert all("labels disagree" in r for r in reasons.values())
    assert "13_0_0_20170110232519225.jpg.chip.jpg" in reasons[
        "10_0_0_20170110220644705.jpg.chip.jpg"]


# --------------------------------------------------------------------------- reader properties

_KINDS = ("jpeg", "truncated", "flipped", "empty", "garbage", "png", "gray_jpeg")
_SAFE_NAME = st.text(alphabet="0123456789_.jpgchiJPG x-", min_size=1, max_size=40)


def _content(kind: str, seed: int, cut: float) -> bytes:
    good = _noise_jpeg(16, seed)
    if kind == "jpeg":
        return good
    if kind == "truncated":
        return good[: max(1, int(len(good) * cut)) - 1]
    if kind == "flipped":
        pos = 3 + int((len(good) - 3) * cut) % (len(good) - 3)
        return good[:pos] + bytes([good[pos] ^ 0xA5]) + good[pos + 1 :]
    if kind == "empty":
        return b""
    if kind == "garbage":
        return np.random.default_rng(seed).bytes(1 + seed % 300)
    if kind == "png":
        return _png("RGB", (seed % 256, 3, 4))
    return simplejpeg.encode_jpeg(np.full((8, 8, 1), seed % 256, np.uint8),
                                  colorspace="GRAY", colorsubsampling="Gray")


@settings(max_examples=25, deadline=None)
@given(
    files=st.lists(
        st.tuples(
            st.one_of(
                st.builds(utkface.format_name, st.integers(0, 130), st.integers(0, 2),
                          st.integers(0, 5), st.from_regex(r"[0-9]{1,6}", fullmatch=True)),
                _SAFE_NAME,
            ),
            st.sampled_from(_KINDS),
            st.integers(0, 10_000),
            st.floats(0.0, 1.0),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_reader_accounts_for_every_file(tmp_path_factory, files):
    """Whatever the folder holds: every file is kept xor rejected (with a known reason);
    kept bytes are the input's (or a listed conversion) and decode to RGB; nothing raises."""
    folder = tmp_path_factory.mktemp("prop")
    written: dict[str, bytes] = {}
    for name, kind, seed, cut in files:
        if name in (".", "..") or name in written:
            continue
        written[name] = _content(kind, seed, cut)
        (folder / name).write_bytes(written[name])
    result = read_utkface(folder)
    kept = {lab.file_name: data for lab, data in result.examples}
    rejected = [r.file_name for r in result.rejects]
    assert sorted([*kept, *rejected]) == sorted(written)  # each exactly once
    kinds = (utkface.BAD_NAME, utkface.UNDECODABLE, utkface.EMPTY, utkface.DUPLICATE,
             utkface.DUPLICATE_IMAGE)
    assert all(r.reason.startswith(kinds) for r in result.rejects)
    converted = dict(result.converted)
    assert set(converted) <= set(kept)
    for name, data in kept.items():
        parse_name(name)  # only well-formed names are kept
        assert (data == written[name]) != (name in converted)
        assert simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True).ndim == 3
    for name, data in written.items():
        if not data:
            assert name not in kept


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 10_000), seed=st.integers(0, 50))
def test_every_truncated_jpeg_is_rejected(tmp_path_factory, cut, seed):
    good = _noise_jpeg(16, seed)
    data = good[: cut % len(good)]  # any proper prefix, including the empty one
    new, note, reason = utkface._check_image(data)
    assert new is None and note is None
    assert reason == utkface.EMPTY if not data else reason.startswith(utkface.UNDECODABLE)

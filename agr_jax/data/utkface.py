"""UTKFace: parse labels from file names, read folders/archives, report rejects, split.

UTKFace encodes labels in the file name: ``{age}_{gender}_{race}_{datetime}.jpg.chip.jpg``
(aligned crops) or ``{age}_{gender}_{race}_{datetime}.jpg`` (in-the-wild). Labels:
age 0-116, gender 0 male / 1 female, race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others.

Nothing is dropped silently: every file that is not kept is returned as a :class:`Reject`
with its name and reason. Images in another format under a ``.jpg`` name (PNG, BMP, ...)
are *converted* to RGB JPEG bytes (quality 95) and listed in :attr:`ReadResult.converted`;
grayscale and CMYK JPEGs are kept as they are (simplejpeg decodes them to RGB). JPEGs that
libjpeg-turbo's strict mode rejects (corrupt or truncated data) are rejected, not repaired:
a lenient decoder would keep a damaged picture. Byte-identical images under different names
are duplicates: the first is kept when the labels agree; when they disagree, every copy is
rejected (one of the labels is wrong and nothing tells which). The real UTKFace crops hold
a few hundred such files.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import os
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RACES = ("White", "Black", "Asian", "Indian", "Others")
GENDERS = ("male", "female")
MAX_AGE = 116
# Bumped when what the reader keeps or rejects changes, so prepared builds are redone.
READER_VERSION = 2

_SUFFIXES = (".jpg.chip.jpg", ".jpg")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class UTKLabel:
    file_name: str
    age: int
    gender: int
    race: int
    timestamp: str


class InvalidName(ValueError):
    """A file name that does not follow ``{age}_{gender}_{race}_{datetime}.jpg[.chip.jpg]``."""

    def __init__(self, file_name: str, reason: str):
        super().__init__(f"{file_name!r}: {reason}")
        self.file_name = file_name
        self.reason = reason


def parse_name(file_name: str) -> UTKLabel:
    """Parses a UTKFace file name (basename; any directory part is stripped).

    Raises:
      InvalidName: with a reason, for anything that is not a well-formed UTKFace name.
    """
    if not isinstance(file_name, str):
        raise InvalidName(repr(file_name), "file name is not a string")
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    if not base:
        raise InvalidName(file_name, "empty file name")
    if any(c.isspace() for c in base):
        raise InvalidName(base, "contains whitespace")
    if re.search(r"[0-9]jpg", base):
        raise InvalidName(base, "missing '.' before the jpg suffix")
    stem = None
    for suffix in _SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            stem = base[: -len(suffix)]
            break
    if stem is None:
        raise InvalidName(base, "not a .jpg / .jpg.chip.jpg file name")
    fields = stem.split("_")
    if len(fields) != 4:
        if len(fields) == 3:
            reason = "3 fields instead of 4 (age_gender_race_datetime): race field missing"
        else:
            reason = f"{len(fields)} fields instead of 4 (age_gender_race_datetime)"
        raise InvalidName(base, reason)
    names = ("age", "gender", "race", "datetime")
    for name, value in zip(names, fields, strict=True):
        if not value.isascii() or not _DIGITS.fullmatch(value):
            raise InvalidName(base, f"{name} field {value!r} is not all digits")
    age, gender, race = int(fields[0]), int(fields[1]), int(fields[2])
    if not 0 <= age <= MAX_AGE:
        raise InvalidName(base, f"age {age} outside 0-{MAX_AGE}")
    if gender not in (0, 1):
        raise InvalidName(base, f"gender {gender} not 0 or 1")
    if not 0 <= race < len(RACES):
        raise InvalidName(base, f"race {race} outside 0-{len(RACES) - 1}")
    return UTKLabel(file_name=base, age=age, gender=gender, race=race, timestamp=fields[3])


def format_name(age: int, gender: int, race: int, timestamp: str, chip: bool = True) -> str:
    """The inverse of :func:`parse_name`."""
    return f"{age}_{gender}_{race}_{timestamp}" + (".jpg.chip.jpg" if chip else ".jpg")


@dataclass
class Reject:
    file_name: str
    reason: str


# Reject kinds, used to group the summary. The reason string starts with one of these.
BAD_NAME = "bad name"
UNDECODABLE = "undecodable"
EMPTY = "zero bytes"
DUPLICATE = "duplicate file name"
DUPLICATE_IMAGE = "duplicate image"


@dataclass
class ReadResult:
    examples: list[tuple[UTKLabel, bytes]]
    rejects: list[Reject]
    # (file_name, what was done), e.g. "PNG converted to RGB JPEG". These are kept.
    converted: list[tuple[str, str]] = field(default_factory=list)

    @property
    def labels(self) -> list[UTKLabel]:
        return [label for label, _ in self.examples]

    def summary(self) -> str:
        kinds = collections.Counter(r.reason.split(":", 1)[0] for r in self.rejects)
        text = f"read {len(self.examples):,} images, rejected {len(self.rejects):,}"
        if kinds:
            text += ": " + ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
        if self.converted:
            text += f"; converted {len(self.converted):,} to RGB JPEG"
        return text

    def report_lines(self) -> list[str]:
        """One line per rejected / converted file, for CLIs and reports."""
        lines = [f"REJECT {r.file_name!r}: {r.reason}" for r in self.rejects]
        lines += [f"CONVERTED {n!r}: {what}" for n, what in self.converted]
        return lines


def _check_image(data: bytes) -> tuple[bytes | None, str | None, str | None]:
    """Returns (bytes to keep, conversion note, reject reason)."""
    import simplejpeg

    if not data:
        return None, None, EMPTY
    if data[:3] == b"\xff\xd8\xff":
        try:
            # Full entropy decode at reduced scale: catches truncation and corruption, fast.
            # Gray and CMYK JPEGs decode to RGB here and are kept as they are.
            simplejpeg.decode_jpeg(data, colorspace="RGB", min_factor=8, strict=True)
            return data, None, None
        except ValueError as e:
            return None, None, f"{UNDECODABLE}: corrupt or truncated JPEG ({e})"
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, mode = img.format, img.mode
            img.load()
            rgb = np.asarray(img.convert("RGB"))
    except Image.UnidentifiedImageError:
        return None, None, f"{UNDECODABLE}: not an image (unknown format)"
    except Exception as e:  # any decoder error is a reject reason
        return None, None, f"{UNDECODABLE}: {type(e).__name__}: {e}"
    new = simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=95, colorspace="RGB")
    return new, f"{fmt} {mode} converted to RGB JPEG (quality 95)", None


def accept_image(
    name: str,
    data: bytes,
    check_decode: bool,
    rejects: list[Reject],
    converted: list[tuple[str, str]],
) -> bytes | None:
    """The bytes to keep for `name` (converted to RGB JPEG where safe), or None after
    recording why it is rejected; every dataset reader shares this rule."""
    if not data:
        rejects.append(Reject(name, EMPTY))
        return None
    if not check_decode:
        return data
    new, note, reason = _check_image(data)
    if reason is not None:
        rejects.append(Reject(name, reason))
        return None
    if note is not None:
        converted.append((name, note))
    return new


def _iter_folder(folder: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yields (name, origin, bytes) for files in folder and one level of subfolders."""
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if sub.is_file():
                    yield sub.name, sub.path, Path(sub.path).read_bytes()
                elif sub.is_dir():
                    log.warning("Not descending into %s (only one level of nesting)", sub.path)
        elif entry.is_file():
            yield entry.name, entry.path, Path(entry.path).read_bytes()


def _iter_tar(archive: Path) -> Iterator[tuple[str, str, bytes]]:
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            f = tar.extractfile(member)
            data = f.read() if f is not None else b""
            yield member.name.rsplit("/", 1)[-1], f"{archive}:{member.name}", data


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _iter_sources(source) -> Iterator[tuple[str, str, bytes]]:
    if isinstance(source, str | os.PathLike):
        sources: Sequence = [source]
    else:
        sources = list(source)
    for src in sources:
        path = Path(src)
        if path.is_dir():
            yield from _iter_folder(path)
        elif _is_archive(path):
            yield from _iter_tar(path)
        elif path.exists():
            raise ValueError(f"{path}: not a folder or a .tar.gz/.tgz/.tar archive")
        else:
            raise FileNotFoundError(f"UTKFace source {path} does not exist")


def read_utkface(
    source: str | os.PathLike | Sequence[str | os.PathLike], *, check_decode: bool = True
) -> ReadResult:
    """Reads UTKFace images and labels from folders and/or tar archives.

    Args:
      source: a folder (files directly in it and in its immediate subfolders, e.g. the
        ``UTKFace/`` folder inside an extracted archive), a ``.tar.gz`` archive (official
        ``UTKFace.tar.gz`` or ``part1.tar.gz`` ...; streamed), or a sequence mixing them.
      check_decode: verify that each image decodes (full decode at 1/8 scale); decodable
        non-JPEG / CMYK images are converted to RGB JPEG and listed in ``converted``.

    Returns:
      A ReadResult: examples sorted by file name, and one Reject per file not kept
      (bad name, zero bytes, undecodable, duplicate file name: the first occurrence is
      kept; duplicate image: see the module docstring).
    """
    kept: dict[str, tuple[UTKLabel, bytes, str]] = {}
    digests: dict[str, list[str]] = collections.defaultdict(list)  # sha1 -> names, in order
    rejects: list[Reject] = []
    converted: list[tuple[str, str]] = []
    seen_rejected: dict[str, str] = {}
    for name, origin, data in _iter_sources(source):
        if name in kept or name in seen_rejected:
            first = kept[name][2] if name in kept else seen_rejected[name]
            same = name in kept and kept[name][1] == data
            what = "identical bytes" if same else "different bytes"
            rejects.append(Reject(name, f"{DUPLICATE}: {origin} ({what}; first seen in {first})"))
            continue
        try:
            label = parse_name(name)
        except InvalidName as e:
            rejects.append(Reject(name, f"{BAD_NAME}: {e.reason}"))
            seen_rejected[name] = origin
            continue
        kept_bytes = accept_image(name, data, check_decode, rejects, converted)
        if kept_bytes is None:
            seen_rejected[name] = origin
            continue
        kept[name] = (label, kept_bytes, origin)
        digests[hashlib.sha1(data).hexdigest()].append(name)
    rejects += _reject_duplicate_images(kept, digests.values())
    examples = [(kept[n][0], kept[n][1]) for n in sorted(kept)]
    rejects.sort(key=lambda r: r.file_name)
    converted.sort()
    result = ReadResult(examples=examples, rejects=rejects, converted=converted)
    for line in result.report_lines():
        log.info("%s", line)
    log.info("%s", result.summary())
    return result


def _reject_duplicate_images(
    kept: dict[str, tuple[UTKLabel, bytes, str]], groups: Iterable[list[str]]
) -> list[Reject]:
    """Drop byte-identical copies from `kept`; returns their Rejects (see module docstring)."""
    rejects = []
    for names in groups:
        if len(names) < 2:
            continue
        labels = {n: kept[n][0] for n in names}
        distinct = {(lab.age, lab.gender, lab.race) for lab in labels.values()}
        if len(distinct) == 1:
            drop, why = names[1:], f"same bytes as {names[0]!r} (same labels; that one is kept)"
        else:
            drop = names
            why = "labels disagree between byte-identical files, so none is kept"
        for name in drop:
            others = [n for n in names if n != name]
            text = why if len(distinct) == 1 else f"same bytes as {others}; {why}"
            rejects.append(Reject(name, f"{DUPLICATE_IMAGE}: {text}"))
            del kept[name]
    return rejects


def filter_age(
    labels: Sequence[UTKLabel], age_range: tuple[int, int] | None
) -> list[int]:
    """Indices of labels with ``age_range[0] <= age <= age_range[1]`` (inclusive)."""
    if age_range is None:
        return list(range(len(labels)))
    lo, hi = validate_age_range(age_range)
    return [i for i, label in enumerate(labels) if lo <= label.age <= hi]


def validate_age_range(age_range: Sequence[int] | None) -> tuple[int, int] | None:
    if age_range is None:
        return None
    lo, hi = (int(a) for a in age_range)
    if not 0 <= lo <= hi <= MAX_AGE:
        raise ValueError(f"age_range {age_range} must satisfy 0 <= min <= max <= {MAX_AGE}")
    return lo, hi


SPLITS = ("train", "validation", "test")


def validate_ratios(ratios: Iterable[float]) -> tuple[float, float, float]:
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3:
        raise ValueError(f"ratios must have 3 values (train, validation, test), got {ratios}")
    if any(r < 0 or not np.isfinite(r) for r in ratios):
        raise ValueError(f"ratios must be non-negative, got {ratios}")
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"ratios must sum to 1, got {ratios} (sum {sum(ratios)})")
    return ratios  # type: ignore[return-value]


def split_by_timestamp(
    labels: Sequence[UTKLabel], ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[int]]:
    """Seeded train/validation/test split grouped by capture timestamp.

    All images sharing a timestamp (crops of one photo) land in the same split. Groups are
    shuffled with ``seed`` (groups ordered by timestamp first, so the result does not depend
    on the input order beyond the indices) and assigned in turn to the split whose share of
    images is not yet filled. Returns sorted index lists.
    """
    ratios = validate_ratios(ratios)
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, label in enumerate(labels):
        groups[label.timestamp].append(i)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    total = len(labels)
    bounds = np.cumsum(ratios) * total
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    done = 0
    for k in order:
        members = groups[keys[k]]
        # The split whose range [bound_{s-1}, bound_s) contains this group's midpoint.
        mid = done + len(members) / 2
        s = int(np.searchsorted(bounds, mid, side="right"))
        s = min(s, len(SPLITS) - 1)
        while ratios[s] == 0 and s > 0:
            s -= 1
        out[SPLITS[s]].extend(members)
        done += len(members)
    return {name: sorted(idx) for name, idx in out.items()}


def kfold_split(
    labels: Sequence[UTKLabel],
    folds: int,
    fold: int,
    seed: int = 0,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
) -> dict[str, list[int]]:
    """Fold ``fold`` of a ``folds``-way split by capture timestamp, as the test split.

    Timestamp groups are shuffled with ``seed`` (same order for every fold) and cut into
    ``folds`` parts of about equal image counts; part ``fold`` is the test split. The other
    groups, in the same order, go to validation for the first
    ``ratios[1] / (ratios[0] + ratios[1])`` of their images, the rest to train. Running
    folds 0..folds-1 tests every image exactly once.
    """
    if folds < 2 or not 0 <= fold < folds:
        raise ValueError(f"k-fold: need folds >= 2 and 0 <= fold < folds, got {fold}/{folds}")
    ratios = validate_ratios(ratios)
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, label in enumerate(labels):
        groups[label.timestamp].append(i)
    keys = sorted(groups)
    order = [keys[k] for k in np.random.default_rng(seed).permutation(len(keys))]
    total = len(labels)
    rest: list[str] = []
    out: dict[str, list[int]] = {name: [] for name in SPLITS}
    done = 0
    for key in order:
        mid = done + len(groups[key]) / 2
        done += len(groups[key])
        if min(int(mid * folds / total), folds - 1) == fold:
            out["test"].extend(groups[key])
        else:
            rest.append(key)
    val_share = ratios[1] / (ratios[0] + ratios[1]) if ratios[0] + ratios[1] > 0 else 0.0
    val_images = val_share * sum(len(groups[k]) for k in rest)
    done = 0
    for key in rest:
        mid = done + len(groups[key]) / 2
        done += len(groups[key])
        out["validation" if mid < val_images else "train"].extend(groups[key])
    return {name: sorted(idx) for name, idx in out.items()}

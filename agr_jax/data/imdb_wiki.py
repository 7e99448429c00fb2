"""IMDB-WIKI: .mat metadata + image folders -> labelled examples, every drop counted; builder.

Expected layout (as distributed, e.g. ``imdb_crop/`` or ``wiki_crop/``)::

    ROOT/imdb.mat (or wiki.mat)    struct `imdb` / `wiki` with fields dob, photo_taken,
                                   full_path, gender, face_score, second_face_score
    ROOT/01/nm0000001_rm124825600_1899-5-10_1968.jpg ...   (`full_path` relative to ROOT)

Labels: ``dob`` is a Matlab serial date number (day 1 = 1 Jan year 0, so Python's ordinal
is ``datenum - 366``); age = ``photo_taken`` - birth year. Gender 1.0 = male in the .mat;
stored in UTKFace's coding (0 male, 1 female). IMDB-WIKI has **no race label**: race is
stored as -1 and the race loss and race metrics skip such examples (use this set for
age/gender pre-training).

Rows are dropped, each with a reason (counted in the prepare report): no face found
(face_score -inf), face_score below ``min_face_score`` (default 1.0, as commonly used),
a second face in the photo (second_face_score not NaN), unknown gender (NaN), age outside
0-116, image missing/empty/undecodable. The split is grouped by person (the id before the
first ``_`` of the file name), so no person is in two splits.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from agr_jax.data import tfds_builders, utkface

log = logging.getLogger(__name__)

FIELDS = ("dob", "photo_taken", "full_path", "gender", "face_score", "second_face_score")
MAT_FILES = ("imdb.mat", "wiki.mat")
NO_FACE = "no face"
LOW_FACE_SCORE = "low face score"
SECOND_FACE = "second face"
NO_GENDER = "unknown gender"
BAD_AGE = "age out of range"
MISSING = "missing image"


@dataclasses.dataclass(frozen=True)
class ImdbWikiLabel:
    file_name: str  # full_path, relative to the root
    age: int
    gender: int
    race: int  # always -1: not labelled
    timestamp: str  # group key for splitting: the person id
    face_score: float


def birth_year(datenum: float) -> int:
    """Year of a Matlab serial date number (Matlab day 1 is 0000-01-01)."""
    return datetime.date.fromordinal(max(int(datenum) - 366, 1)).year


def find_mat(root: Path) -> Path:
    for name in MAT_FILES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root}: no IMDB-WIKI metadata file ({' or '.join(MAT_FILES)})")


def load_metadata(mat_path: str | Path) -> dict[str, np.ndarray]:
    """The metadata columns of an imdb.mat / wiki.mat, one 1-D array per field."""
    from scipy.io import loadmat

    mat = loadmat(str(mat_path), squeeze_me=True)
    keys = [k for k in mat if not k.startswith("__")]
    if len(keys) != 1:
        raise ValueError(f"{mat_path}: expected one struct (imdb or wiki), found {keys}")
    struct = mat[keys[0]]
    names = struct.dtype.names or ()
    missing = set(FIELDS) - set(names)
    if missing:
        raise ValueError(f"{mat_path}: struct {keys[0]!r} lacks fields {sorted(missing)}; "
                         f"expected {FIELDS}")
    cols = {f: np.atleast_1d(np.asarray(struct[f].item() if struct.ndim == 0 else struct[f]))
            for f in FIELDS}
    n = len(cols["full_path"])
    bad = {f: len(c) for f, c in cols.items() if len(c) != n}
    if bad:
        raise ValueError(f"{mat_path}: fields differ in length from full_path ({n}): {bad}")
    return cols


def read_imdb_wiki(
    root: str | Path, *, min_face_score: float = 1.0, check_decode: bool = True
) -> utkface.ReadResult:
    """Examples that pass every filter; one Reject (reason) per metadata row not kept."""
    root = Path(root)
    cols = load_metadata(find_mat(root))
    examples, rejects, converted = [], [], []
    for i in range(len(cols["full_path"])):
        path = str(cols["full_path"][i])
        score, second = float(cols["face_score"][i]), float(cols["second_face_score"][i])
        gender = float(cols["gender"][i])
        age = int(cols["photo_taken"][i]) - birth_year(float(cols["dob"][i]))
        reason = None
        if not np.isfinite(score):
            reason = NO_FACE
        elif score < min_face_score:
            reason = f"{LOW_FACE_SCORE}: {score:.2f} < {min_face_score}"
        elif not np.isnan(second):
            reason = f"{SECOND_FACE}: second_face_score {second:.2f}"
        elif np.isnan(gender):
            reason = NO_GENDER
        elif not 0 <= age <= utkface.MAX_AGE:
            reason = f"{BAD_AGE}: {age} (photo {int(cols['photo_taken'][i])})"
        elif not (root / path).is_file():
            reason = MISSING
        if reason is not None:
            rejects.append(utkface.Reject(path, reason))
            continue
        data = utkface.accept_image(
            path, (root / path).read_bytes(), check_decode, rejects, converted
        )
        if data is None:
            continue
        person = Path(path).name.split("_", 1)[0]
        label = ImdbWikiLabel(path, age, 0 if gender == 1.0 else 1, -1, person, score)
        examples.append((label, data))
    examples.sort(key=lambda e: e[0].file_name)
    result = utkface.ReadResult(examples, sorted(rejects, key=lambda r: r.file_name), converted)
    log.info("%s", result.summary())
    return result


def reject_counts(result: utkface.ReadResult) -> dict[str, int]:
    return dict(collections.Counter(r.reason.split(":", 1)[0] for r in result.rejects))


@dataclasses.dataclass(eq=False)
class ImdbWikiConfig(tfds_builders.UtkFaceConfig):
    """UTKFace's settings plus the face-score threshold; `sources` holds the root folder."""

    min_face_score: float = 1.0


class ImdbWiki(tfds_builders.UtkFace):
    """IMDB-WIKI crops: raw JPEG bytes, age from dob/photo year, gender; race -1 (none)."""

    BUILDER_CONFIGS = [ImdbWikiConfig(name="default")]

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description="IMDB-WIKI face crops; age = photo_taken - birth year; gender; no "
            "race label (race = -1).",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                "age": tfds.features.Scalar(dtype=np.int32),
                "gender": tfds.features.ClassLabel(names=list(utkface.GENDERS)),
                "race": tfds.features.Scalar(dtype=np.int32),
                "face_score": tfds.features.Scalar(dtype=np.float32),
                "file_name": tfds.features.Text(),
                "timestamp": tfds.features.Text(),
            }),
            homepage="https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/",
            metadata=tfds.core.MetadataDict(
                sources=list(cfg.sources), seed=cfg.seed, ratios=list(cfg.ratios),
                min_face_score=cfg.min_face_score, race_names=list(utkface.RACES),
            ),
        )

    def _read(self) -> utkface.ReadResult:
        cfg = self.builder_config
        if len(cfg.sources) != 1:
            raise ValueError(f"IMDB-WIKI: give one root folder, got {list(cfg.sources)}")
        return read_imdb_wiki(cfg.sources[0], min_face_score=cfg.min_face_score,
                              check_decode=cfg.check_decode)

    def _record(self, label: ImdbWikiLabel, data: bytes) -> dict:
        return {**super()._record(label, data), "face_score": label.face_score}

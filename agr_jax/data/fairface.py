"""FairFace: label CSVs + image files -> labelled examples, rejects reported; TFDS builder.

Expected layout (as distributed)::

    ROOT/fairface_label_train.csv   file,age,gender,race,service_test
    ROOT/fairface_label_val.csv     (same columns; optional)
    ROOT/train/1.jpg ...            paths in `file` are relative to ROOT

Labels: gender Male -> 0, Female -> 1 (UTKFace's coding); race, 7 classes, index in
:data:`RACES`; age is a bin ("20-29"). The bin index is kept (``age_bin``) and ``age`` holds
the bin's representative age (:data:`AGE_CENTRES`: the midpoint rounded up, 75 for "more
than 70"), so the common pipeline and losses work unchanged. **Age MAE on FairFace is
therefore the distance to the true bin's centre** (a coarse number with an irreducible part:
a perfect bin classifier still scores ~2-3 years); age-bin accuracy over FairFace's own bins
(:data:`AGE_BIN_EDGES`, used by the evaluation automatically) is the figure to quote.

Splits: ``fairface_label_val.csv`` is the test split (FairFace's official validation set);
``fairface_label_train.csv`` is split into train/validation with the seeded ratios
renormalised (each image its own group). Without a val CSV, every row is split by ratios.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from agr_jax.data import tfds_builders, utkface

log = logging.getLogger(__name__)

RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
         "Middle Eastern")
GENDERS = {"Male": 0, "Female": 1}
AGE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
AGE_BIN_EDGES = (0, 3, 10, 20, 30, 40, 50, 60, 70)
AGE_CENTRES = (1, 6, 15, 25, 35, 45, 55, 65, 75)
CSV_FILES = {"train": "fairface_label_train.csv", "test": "fairface_label_val.csv"}
REQUIRED_COLUMNS = ("file", "age", "gender", "race")
AGE_NOTE = ("FairFace labels age in bins: age MAE is measured to the true bin's representative "
            "age (0-2:1, 3-9:6, 10-19:15, 20-29:25, ..., 60-69:65, 70+:75); quote age-bin "
            "accuracy over FairFace's bins.")


@dataclasses.dataclass(frozen=True)
class FairFaceLabel:
    file_name: str  # the CSV's `file` (relative path), unique
    age: int  # representative age of the bin
    gender: int
    race: int
    timestamp: str  # group key for splitting: the file itself (FairFace faces are distinct)
    age_bin: int
    service_test: bool
    csv_split: str  # "train" or "test": which CSV the row came from


def _parse_row(row: dict, csv_split: str) -> FairFaceLabel:
    """Raises ValueError naming the bad field."""
    if row.get("age") not in AGE_BINS:
        raise ValueError(f"age bin {row.get('age')!r} not one of {AGE_BINS}")
    if row.get("gender") not in GENDERS:
        raise ValueError(f"gender {row.get('gender')!r} not one of {tuple(GENDERS)}")
    if row.get("race") not in RACES:
        raise ValueError(f"race {row.get('race')!r} not one of {RACES}")
    service = str(row.get("service_test", "False")).strip()
    if service not in ("True", "False"):
        raise ValueError(f"service_test {service!r} is not True/False")
    age_bin = AGE_BINS.index(row["age"])
    name = row["file"]
    return FairFaceLabel(name, AGE_CENTRES[age_bin], GENDERS[row["gender"]],
                         RACES.index(row["race"]), name, age_bin, service == "True", csv_split)


def read_fairface(root: str | Path, *, check_decode: bool = True) -> utkface.ReadResult:
    """Every labelled row whose image exists and decodes; one Reject per row not kept."""
    root = Path(root)
    found = {split: root / name for split, name in CSV_FILES.items() if (root / name).exists()}
    if "train" not in found:
        raise FileNotFoundError(f"{root}: no {CSV_FILES['train']} (FairFace label CSV) found")
    examples, rejects, converted = [], [], []
    seen: set[str] = set()
    for csv_split, path in found.items():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(REQUIRED_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}; expected "
                                 f"{REQUIRED_COLUMNS} (+ service_test)")
            for line, row in enumerate(reader, start=2):
                name = row.get("file") or f"{path.name}:{line}"
                if name in seen:
                    rejects.append(utkface.Reject(name, f"{utkface.DUPLICATE}: {path.name} "
                                                        f"line {line}"))
                    continue
                seen.add(name)
                try:
                    label = _parse_row(row, csv_split)
                except ValueError as e:
                    rejects.append(utkface.Reject(name, f"bad label: {path.name} line {line}: {e}"))
                    continue
                image = root / name
                if not image.is_file():
                    rejects.append(utkface.Reject(name, f"missing image: {image}"))
                    continue
                data = utkface.accept_image(
                    name, image.read_bytes(), check_decode, rejects, converted
                )
                if data is not None:
                    examples.append((label, data))
    examples.sort(key=lambda e: e[0].file_name)
    result = utkface.ReadResult(examples, sorted(rejects, key=lambda r: r.file_name), converted)
    log.info("%s", result.summary())
    return result


@dataclasses.dataclass(eq=False)
class FairFaceConfig(tfds_builders.UtkFaceConfig):
    """Same settings as UTKFace; `sources` holds the FairFace root folder."""


class FairFace(tfds_builders.UtkFace):
    """FairFace: raw JPEG bytes, 7 races, age bin (+ representative age)."""

    BUILDER_CONFIGS = [FairFaceConfig(name="default")]

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description="FairFace faces: age bin, gender, race (7 classes). " + AGE_NOTE,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                "age": tfds.features.Scalar(dtype=np.int32),
                "age_bin": tfds.features.ClassLabel(names=list(AGE_BINS)),
                "gender": tfds.features.ClassLabel(names=list(utkface.GENDERS)),
                "race": tfds.features.ClassLabel(names=list(RACES)),
                "service_test": tfds.features.Scalar(dtype=np.bool_),
                "file_name": tfds.features.Text(),
                "timestamp": tfds.features.Text(),
            }),
            homepage="https://github.com/joojs/fairface",
            metadata=tfds.core.MetadataDict(
                sources=list(cfg.sources), seed=cfg.seed, ratios=list(cfg.ratios),
                race_names=list(RACES), age_bin_edges=list(AGE_BIN_EDGES), age_note=AGE_NOTE,
            ),
        )

    def _read(self) -> utkface.ReadResult:
        cfg = self.builder_config
        if len(cfg.sources) != 1:
            raise ValueError(f"FairFace: give one root folder, got {list(cfg.sources)}")
        return read_fairface(cfg.sources[0], check_decode=cfg.check_decode)

    def _split(self, labels) -> dict[str, list[int]]:
        cfg = self.builder_config
        official_test = [i for i, lab in enumerate(labels) if lab.csv_split == "test"]
        if cfg.folds or not official_test:
            return super()._split(labels)
        train_idx = [i for i, lab in enumerate(labels) if lab.csv_split == "train"]
        share = cfg.ratios[0] + cfg.ratios[1]
        ratios = (cfg.ratios[0] / share, cfg.ratios[1] / share, 0.0) if share else (1.0, 0, 0)
        inner = utkface.split_by_timestamp([labels[i] for i in train_idx], ratios, cfg.seed)
        return {
            "train": [train_idx[i] for i in inner["train"]],
            "validation": [train_idx[i] for i in inner["validation"]],
            "test": official_test,
        }

    def _record(self, label: FairFaceLabel, data: bytes) -> dict:
        return {**super()._record(label, data), "age_bin": label.age_bin,
                "service_test": label.service_test}

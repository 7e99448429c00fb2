"""Build the TFDS (ArrayRecord) dataset from raw UTKFace files, reporting every reject.

CLI::

    python -m agr_jax.data.prepare --data_dir DIR --out TFDS_DIR \
        [--dataset utkface|fairface|imdb_wiki] [--seed 0] [--ratios 0.8,0.1,0.1] \
        [--min_age 10 --max_age 65] [--folds 5 --fold 0] [--min_face_score 1.0] \
        [--no_check_decode]

``--data_dir`` may be a folder, a ``.tar.gz`` archive, or a comma-separated list of them
(UTKFace); the FairFace / IMDB-WIKI root folder otherwise (see ``fairface.py``,
``imdb_wiki.py``).

k-fold protocol: ``--folds K --fold k`` builds fold k (of K timestamp-group folds, fixed
by the seed) as the test split; train/validation share the other folds by the ratios.
Build and train k = 0..K-1 (``config.data.folds`` / ``config.data.fold``), then evaluate
each run; every image is tested exactly once.

Idempotence: each distinct setting (sources and a cheap fingerprint of their content, seed,
ratios, age range, decode check) is built into its own TFDS config directory
``OUT/utk_face/<config>/1.0.0``; a complete build with identical settings is reused
(``PrepareReport.reused``), different settings never overwrite an existing build.
``OUT/prepared.json`` points at the latest prepared build (what :func:`load_split` reads).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agr_jax.data import utkface

log = logging.getLogger(__name__)

DATASETS = ("utkface", "fairface", "imdb_wiki")


def builder_classes(dataset: str):
    """(TFDS builder class, its config class) for a dataset name."""
    from agr_jax.data import tfds_builders as tb

    if dataset == "utkface":
        return tb.UtkFace, tb.UtkFaceConfig
    if dataset == "fairface":
        from agr_jax.data import fairface

        return fairface.FairFace, fairface.FairFaceConfig
    if dataset == "imdb_wiki":
        from agr_jax.data import imdb_wiki

        return imdb_wiki.ImdbWiki, imdb_wiki.ImdbWikiConfig
    raise ValueError(f"dataset {dataset!r} not supported; choose from {DATASETS}")


@dataclasses.dataclass
class PrepareReport:
    data_dir: str  # the TFDS version directory holding the build
    reused: bool
    split_sizes: dict[str, int]
    rejects: list[utkface.Reject]
    converted: list[tuple[str, str]]
    num_read: int  # valid images read (before age filtering)
    num_age_excluded: int
    settings: dict
    seconds: float

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for r in self.rejects:
            kind = r.reason.split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        text = f"read {self.num_read:,} images, rejected {len(self.rejects):,}"
        if kinds:
            text += ": " + ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
        if self.converted:
            text += f"; converted {len(self.converted):,} to RGB JPEG"
        if self.settings.get("age_range"):
            lo, hi = self.settings["age_range"]
            text += f"; {self.num_age_excluded:,} outside ages {lo}-{hi} left out"
        return text

    def format(self) -> str:
        lines = [f"REJECT {r.file_name!r}: {r.reason}" for r in self.rejects]
        lines += [f"CONVERTED {n!r}: {what}" for n, what in self.converted]
        lines.append(self.summary())
        sizes = ", ".join(f"{k} {v:,}" for k, v in self.split_sizes.items())
        total = sum(self.split_sizes.values())
        lines.append(f"splits: {sizes} (total {total:,})")
        lines.append(
            f"{'reused' if self.reused else 'built'} {self.data_dir} in {self.seconds:.1f} s"
        )
        return "\n".join(lines)


def check_split_ratios(
    ratios: Sequence[float], folds: int = 0, key: str = "--ratios"
) -> tuple[float, float, float]:
    """The (train, validation, test) shares a TFDS build can make, else ValueError naming
    `key`: three finite shares summing to 1, each > 0 for every split the build fills (with
    k-fold the test split is the held-out fold, so the test share is unused). Checked before
    any data is read: TFDS refuses an empty split only at the end of a whole build."""
    try:
        ratios = utkface.validate_ratios(ratios)
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from None
    filled = utkface.SPLITS[:2] if folds else utkface.SPLITS
    for name, share in zip(utkface.SPLITS, ratios, strict=True):
        if name in filled and share <= 0:
            raise ValueError(
                f"{key}: the {name} share is {share:g} in {ratios}, but every split the "
                f"build makes ({', '.join(filled)}) needs a share > 0: TFDS cannot build an "
                "empty split")
    return ratios


def _as_sources(data_dir) -> list[str]:
    if isinstance(data_dir, str | os.PathLike):
        items = [data_dir]
    else:
        items = list(data_dir)
    out = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                out.append(str(Path(part.strip()).expanduser().resolve()))
    if not out:
        raise ValueError("no data source given")
    for src in out:
        if not Path(src).exists():
            raise FileNotFoundError(f"data source {src} does not exist")
    return out


def _fingerprint(sources: Sequence[str]) -> str:
    """Cheap content fingerprint: names and sizes (folders), size and mtime (archives)."""
    h = hashlib.sha256()
    for src in sources:
        path = Path(src)
        h.update(src.encode())
        if path.is_dir():
            for entry in sorted(os.scandir(path), key=lambda e: e.name):
                h.update(entry.name.encode("utf-8", "surrogateescape"))
                if entry.is_file():
                    h.update(str(entry.stat().st_size).encode())
                elif entry.is_dir():
                    for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                        h.update(sub.name.encode("utf-8", "surrogateescape"))
                        if sub.is_file():
                            h.update(str(sub.stat().st_size).encode())
        else:
            st = path.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _settings(sources, seed, ratios, age_range, check_decode, dataset="utkface", folds=0,
              fold=0, extra=None) -> dict:
    from agr_jax.data.tfds_builders import VERSION

    settings = {
        "dataset": dataset,
        "builder_version": VERSION,
        "reader_version": utkface.READER_VERSION,
        "sources": list(sources),
        "fingerprint": _fingerprint(sources),
        "seed": int(seed),
        "ratios": list(ratios),
        "age_range": list(age_range) if age_range else None,
        "check_decode": bool(check_decode),
    }
    # Only non-default options enter the settings, so existing builds keep their names.
    if folds:
        settings.update(folds=int(folds), fold=int(fold))
    settings.update(extra or {})
    return settings


def _config_name(settings: dict) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    r = "-".join(f"{round(x * 100):d}" for x in settings["ratios"])
    ages = "all" if not settings["age_range"] else "{}-{}".format(*settings["age_range"])
    fold = f"_fold{settings['fold']}of{settings['folds']}" if settings.get("folds") else ""
    return f"seed{settings['seed']}_r{r}_age{ages}{fold}_{digest}"


def prepare(
    data_dir,
    out_dir: str | Path,
    *,
    seed: int = 0,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    age_range: tuple[int, int] | None = None,
    dataset: str = "utkface",
    check_decode: bool = True,
    folds: int = 0,
    fold: int = 0,
    min_face_score: float | None = None,
) -> PrepareReport:
    """Reads ``data_dir`` (folder / archive / list), builds the TFDS dataset in ``out_dir``.

    Reuses an existing complete build with identical settings; see module docstring.
    ``folds`` > 1 selects the k-fold protocol (fold ``fold`` is the test split);
    ``min_face_score`` applies to IMDB-WIKI only (default 1.0).
    """
    import tensorflow_datasets as tfds

    from agr_jax.data import tfds_builders as tb

    builder_cls, config_cls = builder_classes(dataset)
    if folds and not (folds >= 2 and 0 <= fold < folds):
        raise ValueError(f"k-fold: need folds >= 2 and 0 <= fold < folds, got {fold}/{folds}")
    extra = {}
    if min_face_score is not None:
        if dataset != "imdb_wiki":
            raise ValueError("min_face_score applies to --dataset imdb_wiki only")
        extra["min_face_score"] = float(min_face_score)
    start = time.perf_counter()
    ratios = check_split_ratios(ratios, folds)
    age_range = utkface.validate_age_range(age_range)
    sources = _as_sources(data_dir)
    settings = _settings(sources, seed, ratios, age_range, check_decode, dataset, folds, fold,
                         extra)
    name = _config_name(settings)
    out = Path(out_dir).expanduser().resolve()
    version_dir = out / builder_cls.name / name / tb.VERSION
    settings_file = version_dir / tb.SETTINGS_FILE

    if settings_file.exists() and json.loads(settings_file.read_text()) == settings:
        log.info("Reusing complete build %s", version_dir)
        report = _report_from_dir(version_dir, settings, start)
    else:
        if version_dir.exists():  # left over from an interrupted run: rebuild
            log.warning("Removing incomplete build %s", version_dir)
            shutil.rmtree(version_dir)
        config = config_cls(
            name=name,
            description=f"{dataset} from {sources}",
            sources=tuple(sources),
            seed=int(seed),
            ratios=ratios,
            age_range=age_range,
            check_decode=check_decode,
            folds=int(folds),
            fold=int(fold),
            **extra,
        )
        builder = builder_cls(data_dir=str(out), config=config, file_format="array_record")
        tfds.disable_progress_bar()
        builder.download_and_prepare()
        result = builder.read_result
        assert result is not None
        split_sizes = {s: int(builder.info.splits[s].num_examples) for s in utkface.SPLITS}
        (version_dir / tb.REJECTS_FILE).write_text(
            json.dumps(
                {
                    "summary": result.summary(),
                    "num_read": len(result.examples),
                    "num_age_excluded": builder.num_age_excluded,
                    "rejects": [dataclasses.asdict(r) for r in result.rejects],
                    "converted": [{"file_name": n, "what": w} for n, w in result.converted],
                },
                indent=1,
            )
        )
        write_json_atomic(settings_file, settings)  # marks completion
        report = PrepareReport(
            data_dir=str(version_dir),
            reused=False,
            split_sizes=split_sizes,
            rejects=list(result.rejects),
            converted=list(result.converted),
            num_read=len(result.examples),
            num_age_excluded=builder.num_age_excluded,
            settings=settings,
            seconds=time.perf_counter() - start,
        )
    # Rewritten on reuse too: atomically, since runs sharing `out` read it concurrently.
    write_json_atomic(
        out / tb.PREPARED_POINTER,
        {"path": str(version_dir.relative_to(out)), "settings": settings},
    )
    return report


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON so concurrent readers see the old file or the new one, never a partial one
    (a truncated pointer once failed a run started beside another on the same build)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def _report_from_dir(version_dir: Path, settings: dict, start: float) -> PrepareReport:
    from agr_jax.data import tfds_builders as tb

    info = tb.dataset_info(version_dir)
    rejects = json.loads((version_dir / tb.REJECTS_FILE).read_text())
    return PrepareReport(
        data_dir=str(version_dir),
        reused=True,
        split_sizes={s: info["splits"].get(s, 0) for s in utkface.SPLITS},
        rejects=[utkface.Reject(**r) for r in rejects["rejects"]],
        converted=[(c["file_name"], c["what"]) for c in rejects["converted"]],
        num_read=rejects["num_read"],
        num_age_excluded=rejects["num_age_excluded"],
        settings=settings,
        seconds=time.perf_counter() - start,
    )


class ListSource:
    """Random-access source over in-memory (label, bytes) pairs, same items as load_split."""

    def __init__(self, examples: Sequence[tuple[utkface.UTKLabel, bytes]]):
        self._examples = list(examples)

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict:
        import numpy as np

        label, data = self._examples[index]
        return {
            "image": data,
            "age": np.int32(label.age),
            "gender": np.int32(label.gender),
            "race": np.int32(label.race),
            "file_name": label.file_name,
            "timestamp": label.timestamp,
        }


def folder_source(
    path, *, check_decode: bool = True, age_range: tuple[int, int] | None = None
) -> tuple[ListSource, utkface.ReadResult]:
    """Every valid image of a UTKFace-format folder/archive as a data source (no split)."""
    result = utkface.read_utkface(path, check_decode=check_decode)
    keep = utkface.filter_age(result.labels, age_range)
    return ListSource([result.examples[i] for i in keep]), result


def _parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--ratios {text!r}: {e}") from e
    try:  # the shares each split needs are checked by `prepare`, which knows --folds
        return utkface.validate_ratios(values)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def build_parser() -> argparse.ArgumentParser:
    """This entry point's flags (tests/test_docs_commands.py checks the docs against them)."""
    parser = argparse.ArgumentParser(
        description="Build the TFDS dataset from raw files; prints every rejected file."
    )
    parser.add_argument("--data_dir", required=True,
                        help="folder, .tar.gz archive, or comma-separated list of them")
    parser.add_argument("--out", required=True, help="TFDS output directory")
    parser.add_argument("--dataset", default="utkface", choices=DATASETS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratios", type=_parse_ratios, default=(0.8, 0.1, 0.1),
                        help="train,validation,test fractions (sum to 1)")
    parser.add_argument("--min_age", type=int, default=None)
    parser.add_argument("--max_age", type=int, default=None)
    parser.add_argument("--folds", type=int, default=0,
                        help="k-fold protocol: number of timestamp-group folds (0: off)")
    parser.add_argument("--fold", type=int, default=0, help="k-fold: the fold held out as test")
    parser.add_argument("--min_face_score", type=float, default=None,
                        help="imdb_wiki: drop faces scoring below this (default 1.0)")
    parser.add_argument("--no_check_decode", action="store_true",
                        help="skip verifying that every image decodes")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    age_range = None
    if args.min_age is not None or args.max_age is not None:
        age_range = (
            args.min_age if args.min_age is not None else 0,
            args.max_age if args.max_age is not None else utkface.MAX_AGE,
        )
    try:
        report = prepare(
            args.data_dir, args.out, seed=args.seed, ratios=args.ratios, age_range=age_range,
            dataset=args.dataset, check_decode=not args.no_check_decode,
            folds=args.folds, fold=args.fold, min_face_score=args.min_face_score,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())

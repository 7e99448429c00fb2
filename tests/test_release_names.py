"""The package's releases by name ("default", "fast"): their folders, `Predictor.default(model=)`,
the error while a release is not written yet, and the entry points' `--model` flag."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_COMPILE
from inference_fakes import tiny_bundle

from agr_jax import cli
from agr_jax.inference import release
from agr_jax.inference.predictor import Predictor

PACKAGE = Path(release.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture
def fast_only(bundle, tmp_path, monkeypatch):
    """A "fast" release written into a temporary folder (never into the package); "default"
    points at an empty one."""
    folder = release.write_release(bundle, tmp_path / "fast", dtype=np.float32)
    empty = tmp_path / "empty"
    monkeypatch.setattr(release, "released_dir",
                        lambda name="default": {"fast": folder, "default": empty}[name])
    return folder


def test_release_names_map_to_package_folders():
    assert release.released_dir() == release.released_dir("default") == PACKAGE / "released"
    assert release.released_dir("fast") == PACKAGE / "released_fast"
    with pytest.raises(ValueError, match=r"\['default', 'fast'\], got 'tiny'"):
        release.released_dir("tiny")
    # The entry points' parsers name the releases without importing JAX: the same names.
    assert cli.RELEASE_NAMES == tuple(release.RELEASES) == tuple(release.RECIPES)
    for recipe in release.RECIPES.values():
        assert (PACKAGE.parent / recipe).exists(), recipe


def test_recipes_name_the_configs_the_shipped_releases_were_trained_with():
    for name, recipe in release.RECIPES.items():
        meta = release.released_dir(name) / release.MODEL_JSON
        if meta.exists():  # a release folder may ship before its weights exist
            trained = json.loads(meta.read_text())["source"]["config_name"]
            assert Path(recipe).stem == trained, (name, recipe)


def test_default_model_fast_loads_the_fast_release(fast_only, bundle):
    predictor = Predictor.default(model="fast", views=2, compiler_options=FAST_COMPILE)
    assert predictor.views == 2 and predictor.bundle.image_size == bundle.image_size
    assert predictor.bundle.describe() == release.read_release(fast_only).describe()
    with pytest.raises(FileNotFoundError):  # "default" is the empty folder here
        Predictor.default()


def test_a_release_not_written_yet_names_the_commands_that_write_it(tmp_path, monkeypatch):
    missing = tmp_path / "released_fast"  # not even created
    monkeypatch.setattr(release, "released_dir", lambda name="default": missing)
    with pytest.raises(FileNotFoundError) as e:
        Predictor.default(model="fast")
    message = str(e.value)
    assert "no released model here" in message
    assert ("python -m agr_jax.train --config configs/utkface_fast_distilled.py --workdir RUN"
            in message)
    assert "python -m agr_jax.release --workdir RUN --out agr_jax/released_fast" in message


@pytest.fixture
def predict_entry(monkeypatch):
    """`agr_jax.predict` imported into this process; its absl flags are forgotten after, so
    other entry points can define flags of the same names (tests/entry_point_flags.py)."""
    from absl import flags

    before, was_parsed = set(flags.FLAGS), flags.FLAGS.is_parsed()
    from agr_jax import predict

    monkeypatch.setattr(predict, "setup_logging", lambda *a: None)
    # this process's JAX has started: the malloc settings belong to a fresh entry point
    monkeypatch.setattr(predict.host_memory, "reuse_freed_memory", lambda: "not in tests")
    yield predict
    flags.FLAGS.unparse_flags()
    if was_parsed:
        flags.FLAGS.mark_as_parsed()
    for name in set(flags.FLAGS) - before:
        delattr(flags.FLAGS, name)
    sys.modules.pop("agr_jax.predict", None)


def test_predict_cli_model_flag_picks_the_release_unless_a_workdir_is_given(predict_entry,
                                                                             monkeypatch):
    from absl import flags

    from agr_jax.inference import run as run_lib

    calls = []
    monkeypatch.setattr(Predictor, "default",
                        classmethod(lambda cls, model="default", **kw: calls.append(
                            ("default", model, kw["views"])) or "P"))
    monkeypatch.setattr(Predictor, "from_workdir",
                        classmethod(lambda cls, workdir, which=None, **kw: calls.append(
                            ("workdir", workdir, kw["views"])) or "P"))
    monkeypatch.setattr(run_lib, "run", lambda predictor, paths, **kw: 0)

    def main(*args):
        argv = flags.FLAGS(["predict", *args])
        with pytest.raises(SystemExit) as e:
            predict_entry.main(argv)
        assert e.value.code == 0
        flags.FLAGS.unparse_flags()

    main("--model", "fast", "--views", "2", "x.jpg")
    main("x.jpg")
    main("--workdir", "runs/w", "--model", "fast", "x.jpg")  # --model is ignored
    assert calls == [("default", "fast", 2), ("default", "default", 1),
                     ("workdir", "runs/w", 1)]
    with pytest.raises(flags.IllegalFlagValueError):
        flags.FLAGS(["predict", "--model", "tiny", "x.jpg"])


def test_serve_and_export_parsers_take_the_model():
    from agr_jax import export
    from agr_jax.serve.__main__ import build_parser as serve_parser

    for parser, rest in ((serve_parser(), []),
                         (export.build_parser(), ["--format", "onnx", "--out", "m.onnx"])):
        assert parser.parse_args(rest).model == "default"
        assert parser.parse_args(["--model", "fast", *rest]).model == "fast"
        with pytest.raises(SystemExit):
            parser.parse_args(["--model", "tiny", *rest])


def test_export_model_fast_exports_the_fast_release(fast_only, tmp_path, monkeypatch, capsys):
    from agr_jax import export as entry
    from agr_jax.inference import export as export_lib

    exported = []

    def fake_export(bundle, fmt, out, views, platforms):
        exported.append(bundle)
        return {"path": str(out), "bytes": 0, "format": fmt, "input": {}, "outputs": []}

    monkeypatch.setattr(export_lib, "export", fake_export)
    out = tmp_path / "m.onnx"
    assert entry.main(["--model", "fast", "--format", "onnx", "--out", str(out)]) == 0
    assert exported[0].describe() == release.read_release(fast_only).describe()
    assert json.loads(capsys.readouterr().out)["path"] == str(out)

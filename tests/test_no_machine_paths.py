"""What users read and run names no folder of one machine (the work root, the temp directory,
a home) and cites no file outside the repository (the design notes): caches live under
`agr_jax.paths.cache_dir`, scratch under the git-ignored runs/, facts in docs/."""

import re
from pathlib import Path

import pytest

from agr_jax import paths

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "README.md", ROOT / "Makefile", ROOT / ".ci" / "run",
           *sorted((ROOT / "docs").glob("*.md")),
           *(p for folder in ("agr_jax", "configs", "benchmarks", "scripts", "tests")
             for p in sorted((ROOT / folder).rglob("*"))
             if p.suffix in (".py", ".md", ".sbatch", ".sh") and p != Path(__file__))]
MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:work|tmp|home|root)/")
DESIGN_NOTES = re.compile(r"\bDESIGN(?:\.md|\s*§)")


@pytest.mark.parametrize("pattern", [MACHINE_PATH, DESIGN_NOTES], ids=["path", "design"])
def test_no_machine_paths_and_no_outside_citations(pattern):
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
             for p in SCANNED if p.is_file()
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
             if pattern.search(line)]
    assert not found, "\n".join(found)


def test_cache_dir_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert paths.cache_dir("onednn") == tmp_path / "agr_jax" / "onednn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "agr_jax"

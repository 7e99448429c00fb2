"""`evaluation` and the training loop do not import each other: the loop imports
`evaluation` (for `predict`); `evaluation` builds its model through `train/model_spec.py`.
Checked on the imports a module makes anywhere (function bodies too), followed transitively."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def imports_of(name: str) -> set[str]:
    """agr_jax modules `name` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(module_file(name).read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:  # `from pkg import mod` names a module when the file exists
                sub = f"{node.module}.{a.name}"
                out.add(sub if module_file(sub) else node.module)
    return {m for m in out if m.startswith("agr_jax") and module_file(m)}


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += imports_of(name) - seen
    return seen


def test_evaluation_reaches_no_training_loop():
    assert "agr_jax.train.loop" not in reachable("agr_jax.evaluation")
    assert "agr_jax.evaluation" in imports_of("agr_jax.train.loop")  # the one direction kept


@pytest.mark.parametrize("module", ["agr_jax.evaluation", "agr_jax.train.loop"])
def test_each_imports_alone_in_a_fresh_process(module):
    code = (f"import sys, {module}; "
            "print('agr_jax.train.loop' in sys.modules, 'agr_jax.evaluation' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    expected = {"agr_jax.evaluation": ["False", "True"], "agr_jax.train.loop": ["True", "True"]}
    assert out == expected[module]

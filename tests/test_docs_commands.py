"""Every `python -m agr_jax...` command in README.md and docs/*.md runs a module that exists,
with flags its parser accepts, so the docs cannot drift from the code.

Commands are read from fenced and indented code blocks (`\\` continuations joined) and from
inline code spans in prose. Nothing is run: `tests/entry_point_flags.py` imports each entry
point in one child process (no compile, no main) and reports what it accepts.

Conventions an entry point must follow to be checked (anything else fails loudly):
- absl: flags defined at import (`flags.DEFINE_*`); `--noNAME` is accepted for booleans. A
  `config_flags.DEFINE_config_file` flag takes `--config.a.b=v` overrides: `a.b` must be a key
  of the config file named on the same command (`--config FILE`), else of agr_jax/defaults.py.
- argparse: the module exposes `build_parser() -> argparse.ArgumentParser` (main calls it);
  argparse sub-commands (`add_subparsers`) are followed by the first positional argument.
- dispatchers (`python -m agr_jax.convert FORMAT ...`): the package's `__main__` exposes
  `subcommands()` (or `formats()`) returning names; the first positional argument must be one
  of them, and the rest of the line is checked against the module `<package>.<name>`, which
  follows these same conventions.
A module with none of these is reported as "cannot introspect", never passed silently.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "entry_point_flags.py"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python3? -m\s+(agr_jax[\w.]*)")
STOP_TOKENS = {";", "&&", "||", "|", ">", "2>", "2>&1"}
FAKE_MODULE = "agr_jax.no_such_module_for_docs_test"
FLAGLESS_MODULE = "agr_jax.tasks"  # a library module: nothing to introspect


@dataclass(frozen=True)
class Command:
    source: str  # "README.md:12"
    module: str
    args: tuple[str, ...]


def _code_lines(text: str) -> tuple[list[tuple[int, str]], str]:
    """(line number, code line) of fenced and indented blocks, continuations joined; and the
    prose (code blocks blanked) for inline spans."""
    code, prose = [], []
    fenced = False
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            prose.append("")
            continue
        indented = (line.startswith("    ") and "`" not in line
                    and not line.lstrip().startswith(("- ", "* ", "|")))
        continues = bool(code) and code[-1][0] == number - 1 and code[-1][1].endswith("\\")
        if fenced or (indented and ("python" in line or continues)):
            code.append((number, line.rstrip()))
            prose.append("")
        else:
            prose.append(line)
    joined: list[tuple[int, str]] = []
    for number, line in code:
        if joined and joined[-1][1].endswith("\\") and joined[-1][2] == number - 1:
            first, text_so_far, _ = joined.pop()
            joined.append((first, text_so_far[:-1] + " " + line.strip(), number))
        else:
            joined.append((number, line.strip(), number))
    return [(n, t) for n, t, _ in joined], "\n".join(prose)


def commands_in(text: str, name: str) -> list[Command]:
    """Every `python -m agr_jax...` command of a Markdown document."""
    code, prose = _code_lines(text)
    snippets = list(code)
    for match in re.finditer(r"`([^`]+)`", prose):
        line = prose.count("\n", 0, match.start()) + 1
        snippets.append((line, " ".join(match.group(1).split())))
    found = []
    for line, snippet in snippets:
        for match in COMMAND.finditer(snippet):
            args = []
            for token in snippet[match.end():].split():
                if token in STOP_TOKENS or token.startswith("#") or token == "python":
                    break
                quoted = '"' in token or "'" in token
                token = token.strip("[]\"'")
                if token:
                    args.append(token)
                if quoted:  # the command was quoted inside another one (ssh --command="...")
                    break
            found.append(Command(f"{name}:{line}", match.group(1), tuple(args)))
    return found


@functools.cache
def _config(path: str | None) -> Any:
    """The config file's `get_config()` (agr_jax/defaults.py when there is no such file)."""
    target = ROOT / (path or "agr_jax/defaults.py")
    spec = importlib.util.spec_from_file_location(f"_docs_config_{target.stem}", target)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT))
    return module.get_config()


def _has_key(config: Any, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        try:
            if part not in node:
                return False
        except TypeError:  # a leaf value: no sub-keys
            return False
        node = node[part]
    return True


def _config_file_arg(args: tuple[str, ...], flag: str) -> str | None:
    for i, token in enumerate(args):
        if token == f"--{flag}" and i + 1 < len(args):
            return args[i + 1]
        if token.startswith(f"--{flag}="):
            return token.split("=", 1)[1]
    return None


def problems(command: Command, described: dict[str, Any]) -> list[str]:
    """What is wrong with one command, given `entry_point_flags.describe_all` output."""
    info = described.get(command.module)
    where = f"{command.source}: python -m {command.module}"
    if info is None:
        return [f"{where}: not introspected"]
    if "error" in info:
        return [f"{where}: {info['error']}"]
    args = list(command.args)
    if info["kind"] == "dispatch" or info.get("subcommands"):
        positional = next((a for a in args if not a.startswith("-")), None)
        if positional not in info["subcommands"]:
            if info["kind"] == "dispatch" or positional is not None:
                return [f"{where}: sub-command {positional!r} is not one of "
                        f"{sorted(info['subcommands'])}"]
        else:
            args.remove(positional)
            sub = info["subcommands"][positional]
            if "module" in sub:
                return problems(Command(command.source, sub["module"], tuple(args)), described)
            info = {**info, "flags": sorted(set(info["flags"]) | set(sub["flags"]))}
    out = []
    for token in args:
        if not token.startswith("--") or token == "--":
            continue
        name = token[2:].split("=", 1)[0]
        if info["kind"] == "argparse":
            if f"--{name}" not in info["flags"]:
                out.append(f"{where}: unknown flag --{name}")
            continue
        root, _, key = name.partition(".")
        if key and root in info["config_files"]:
            config_path = _config_file_arg(command.args, root)
            if not config_path or not (ROOT / config_path).is_file():
                config_path = None
            if not _has_key(_config(config_path), key):
                source = config_path or "agr_jax/defaults.py"
                out.append(f"{where}: --{name}: no key {key!r} in {source}")
        elif name not in info["flags"] and not (
            name.startswith("no") and name[2:] in info["booleans"]
        ):
            out.append(f"{where}: unknown flag --{name}")
    return out


def describe(modules: set[str]) -> dict[str, Any]:
    """Run the probe once in a child process (absl flags are process-global)."""
    result = subprocess.run(
        [sys.executable, str(PROBE), *sorted(modules)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@functools.cache
def documented() -> dict[str, list[Command]]:
    return {doc.name: commands_in(doc.read_text(), str(doc.relative_to(ROOT))) for doc in DOCS}


@pytest.fixture(scope="module")
def described() -> dict[str, Any]:
    modules = {c.module for cs in documented().values() for c in cs}
    return describe(modules | {FAKE_MODULE, FLAGLESS_MODULE, "agr_jax.train", "agr_jax.convert",
                               "agr_jax.data.prepare"})


@pytest.mark.parametrize("doc", [d.name for d in DOCS])
def test_documented_commands_match_their_parsers(doc, described):
    found = [p for command in documented()[doc] for p in problems(command, described)]
    assert not found, "\n".join(found)


def test_readme_has_commands_to_check():
    modules = {c.module for c in documented()["README.md"]}
    assert {"agr_jax.train", "agr_jax.evaluate", "agr_jax.data.prepare"} <= modules


def test_checker_catches_made_up_modules_flags_and_keys(described):
    def check(line: str) -> list[str]:
        (command,) = commands_in(f"```bash\n{line}\n```\n", "test.md")
        return problems(command, described)

    assert check("python -m agr_jax.train --config configs/quickstart.py --workdir W") == []
    assert check("python -m agr_jax.evaluate --noflip_tta --workdir W") == []
    assert "unknown flag --made_up" in check("python -m agr_jax.evaluate --made_up=1")[0]
    assert "unknown flag --nosplit" in check("python -m agr_jax.evaluate --nosplit")[0]
    assert "unknown flag --made_up" in check("python -m agr_jax.data.prepare --made_up 3")[0]
    assert "no module" in check(f"python -m {FAKE_MODULE} --x")[0]
    assert "cannot introspect" in check(f"python -m {FLAGLESS_MODULE}")[0]
    assert "no key 'made_up'" in check(
        "python -m agr_jax.train --config configs/quickstart.py --config.made_up=1")[0]
    # A key the config file sets but defaults.py does not (model.width): the file decides.
    assert check("python -m agr_jax.train --config configs/quickstart.py "
                 "--config.model.width=16") == []
    assert "no key 'model.width'" in check("python -m agr_jax.train --config.model.width=16")[0]
    assert "sub-command" in check("python -m agr_jax.convert no_such_format --out x")[0]


def test_continuations_and_inline_spans_are_read():
    text = ("Run `python -m agr_jax.evaluate --workdir W\n--split validation` then\n\n"
            "```bash\npython -m agr_jax.train --config C \\\n    --workdir W  # comment\n```\n"
            "\n    python -m agr_jax.data.prepare --data_dir D \\\n        [--seed 0]\n")
    got = [(c.module, c.args) for c in commands_in(text, "x.md")]
    assert ("agr_jax.evaluate", ("--workdir", "W", "--split", "validation")) in got
    assert ("agr_jax.train", ("--config", "C", "--workdir", "W")) in got
    assert ("agr_jax.data.prepare", ("--data_dir", "D", "--seed", "0")) in got

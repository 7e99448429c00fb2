"""Print, as JSON, what each `python -m MODULE` entry point accepts, without running its main.

    python tests/entry_point_flags.py agr_jax.train agr_jax.data.prepare ...

Used by tests/test_docs_commands.py in a child process, because importing absl entry points
registers their flags in absl's global registry (two modules defining `--workdir` cannot be
imported side by side). The conventions it relies on are in that test's docstring.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from absl import flags

# Introspect the checkout this file sits in, not whichever agr_jax the environment installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
DISPATCHERS = ("subcommands", "formats")  # a package __main__ dispatching on its first arg


def _argparse_options(parser: argparse.ArgumentParser) -> dict[str, Any]:
    subparsers = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subparsers = {name: _argparse_options(sub) for name, sub in action.choices.items()}
    return {"kind": "argparse", "flags": sorted(parser._option_string_actions),
            "subcommands": subparsers}


def _forget(new_flags: set[str], new_modules: set[str]) -> None:
    """Unregister the flags an import added and drop the modules that defined them, so the
    next entry point can define flags of the same names (it re-imports those modules)."""
    defining = {FLAGS.find_module_defining_flag(name) for name in new_flags} & new_modules
    for name in new_flags:
        delattr(FLAGS, name)
    for module_name in defining:
        parent, _, child = module_name.rpartition(".")
        sys.modules.pop(module_name, None)
        if parent in sys.modules and hasattr(sys.modules[parent], child):
            delattr(sys.modules[parent], child)


def describe(name: str) -> dict[str, Any]:
    """What `python -m name` accepts: absl flags, an argparse parser, or sub-commands."""
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        return {"error": f"no module named {name}"}
    target = name
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        target = f"{name}.__main__"
        if importlib.util.find_spec(target) is None:
            return {"error": f"package {name} has no __main__"}
    flags_before, modules_before = set(FLAGS), set(sys.modules)
    module = importlib.import_module(target)
    new_flags = set(FLAGS) - flags_before
    try:
        if new_flags:
            names = sorted(FLAGS)
            return {
                "kind": "absl",
                "flags": names,
                "booleans": [n for n in names if isinstance(FLAGS[n], flags.BooleanFlag)],
                # ml_collections' DEFINE_config_file flags: `--NAME.key=value` overrides.
                "config_files": [n for n in names if type(FLAGS[n]).__name__ == "_ConfigFlag"],
            }
        if callable(getattr(module, "build_parser", None)):
            return _argparse_options(module.build_parser())
        for attribute in DISPATCHERS:
            if callable(getattr(module, attribute, None)):
                return {"kind": "dispatch", "subcommands": {
                    sub: {"module": f"{name}.{sub}"} for sub in getattr(module, attribute)()}}
        return {"error": f"cannot introspect {target}: it defines no absl flags at import, "
                         f"no build_parser() and no {' / '.join(DISPATCHERS)}() "
                         "(see tests/test_docs_commands.py)"}
    finally:
        _forget(new_flags, set(sys.modules) - modules_before)


def describe_all(names: list[str]) -> dict[str, Any]:
    """`describe` each name, following dispatchers into their sub-command modules."""
    out: dict[str, Any] = {}
    pending = list(names)
    while pending:
        name = pending.pop(0)
        if name in out:
            continue
        out[name] = describe(name)
        for sub in out[name].get("subcommands", {}).values():
            if "module" in sub:
                pending.append(sub["module"])
    return out


if __name__ == "__main__":
    json.dump(describe_all(sys.argv[1:]), sys.stdout, indent=1)

"""`python -m agr_jax.convert FORMAT [flags]`: run the importer `agr_jax.convert.FORMAT`."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import agr_jax.convert as package


def formats() -> list[str]:
    names = (m.name for m in pkgutil.iter_modules(package.__path__))
    return sorted(n for n in names if not n.startswith("_"))


def main(argv: list[str]) -> int:
    known = formats()
    if not argv or argv[0] not in known:
        print(f"usage: python -m agr_jax.convert {{{'|'.join(known)}}} [flags]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"agr_jax.convert.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

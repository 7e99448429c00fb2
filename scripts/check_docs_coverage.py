"""Check that moving text out of README.md lost nothing: every number, inline code span and
code-block line of README.md at a base commit still appears in README.md or docs/*.md.

    python scripts/check_docs_coverage.py [--base 12a8fa2]

Whitespace is normalised (re-wrapped prose still matches); prose wording is not compared, so
rewrites are free as long as the facts (numbers) and the commands survive. Exit status 1 and
a list of what is missing otherwise. Run it after merging branches that edited README.md in
parallel with the split, with their merge base as --base.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _normal(text: str) -> str:
    return " ".join(text.split())


def facts(markdown: str) -> dict[str, set[str]]:
    """Numbers, inline code spans and code-block lines of a Markdown text."""
    code_lines, prose, fenced = set(), [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced or (line.startswith("    ") and not line.lstrip().startswith(("- ", "* "))):
            if line.strip():
                code_lines.add(_normal(line))
        else:
            prose.append(line)
    spans = {_normal(s) for s in re.findall(r"`([^`]+)`", "\n".join(prose))}
    return {"numbers": set(NUMBER.findall(markdown)), "code spans": spans,
            "code-block lines": code_lines}


def missing(old: str, new: str) -> dict[str, list[str]]:
    """What of `old`'s facts `new` lacks (numbers compared as tokens, code as substrings)."""
    new_normal = _normal(new)
    new_numbers = set(NUMBER.findall(new))
    out = {}
    for kind, items in facts(old).items():
        if kind == "numbers":
            lost = items - new_numbers
        else:
            lost = {item for item in items if item not in new_normal}
        if lost:
            out[kind] = sorted(lost)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="12a8fa2", help="commit holding the old README.md")
    args = parser.parse_args(argv)
    old = subprocess.run(["git", "show", f"{args.base}:README.md"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    new = "\n".join(page.read_text() for page in pages)
    lost = missing(old, new)
    for kind, items in lost.items():
        print(f"{len(items)} {kind} of README.md at {args.base} appear nowhere now:")
        for item in items:
            print(f"  {item}")
    if not lost:
        print(f"every number, code span and code-block line of README.md at {args.base} "
              f"appears in README.md or docs/*.md")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())

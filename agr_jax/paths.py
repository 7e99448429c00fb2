"""Where agr_jax keeps its own files outside the repository, the same on every machine.

One root, `$XDG_CACHE_HOME/agr_jax` (the XDG base-directory convention), else
`~/.cache/agr_jax`: the oneDNN library, downloaded sources of pretrained starts and similar
caches live under it, so no config, doc or script names one machine's folders."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """`$XDG_CACHE_HOME/agr_jax/<parts>` (`~/.cache/agr_jax/<parts>` without it); not created."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base, "agr_jax", *parts)

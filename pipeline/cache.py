"""Content-addressed stage cache: an entry is a stage's output directory, stored under its input key.

Entries are written through `atomic_dir`, so an entry exists completely or not at all, and a crash
never leaves one that a later run would trust. Hits are hard-linked into the run directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pipeline.atomic import atomic_dir
from pipeline.config import CacheMode


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


class StageCache:
    """Fetches a stage's output from the cache or builds it (and stores it), per `cache` mode."""

    def __init__(self, root: Path, mode: CacheMode) -> None:
        self.root = root
        self.mode = mode

    def entry(self, name: str, key: str) -> Path:
        return self.root / name / key

    def materialise(self, name: str, key: str, dest: Path, build: Callable[[Path], None]) -> bool:
        """Make `dest` hold the output for `key`: copied from the cache (True) or built by `build` (False)."""
        entry = self.entry(name, key)
        if self.mode == CacheMode.on and entry.is_dir():
            with atomic_dir(dest) as out:
                shutil.copytree(entry, out, dirs_exist_ok=True, copy_function=_link_or_copy)
            return True
        with atomic_dir(dest) as out:
            build(out)
        if self.mode != CacheMode.off:
            with atomic_dir(entry) as stored:
                shutil.copytree(dest, stored, dirs_exist_ok=True, copy_function=_link_or_copy)
        return False

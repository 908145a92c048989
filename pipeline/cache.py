"""Content-addressed stage cache: an entry is a stage's output directory, stored under its input key.

Entries are written through `atomic_dir`, so an entry exists completely or not at all, and a crash never leaves
one that a later run would trust. Each entry records its files' SHA-256 when it is stored, and a hit is checked
against them: a damaged entry (a truncated file, flipped bytes) is rebuilt with a warning, not used. Hits are
copied into the run directory, never hard-linked, so damaging an entry cannot change a finished run's outputs.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from pipeline.atomic import atomic_dir, read_json, write_json
from pipeline.config import CacheMode

log = logging.getLogger("pipeline")
HASHES = ".sha256.json"  # in each entry: relative path -> SHA-256 of every file, as stored


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root` but the hash list, by path relative to it."""
    hashes = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != HASHES):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        hashes[str(path.relative_to(root))] = digest.hexdigest()
    return hashes


def damage(entry: Path) -> str | None:
    """Why `entry` cannot be trusted (a file missing, added or changed since it was stored), or None."""
    try:
        recorded = read_json(entry / HASHES)
    except (OSError, ValueError):
        return f"no readable {HASHES} (stored by an older version, or damaged)"
    found = file_hashes(entry)
    for name in sorted(set(recorded) | set(found)):
        if recorded.get(name) != found.get(name):
            what = "missing" if name not in found else "not stored with it" if name not in recorded else "changed"
            return f"{name} {what}"
    return None


class StageCache:
    """Fetches a stage's output from the cache or builds it (and stores it), per `cache` mode."""

    def __init__(self, root: Path, mode: CacheMode) -> None:
        self.root = root
        self.mode = mode

    def entry(self, name: str, key: str) -> Path:
        return self.root / name / key

    def materialise(self, name: str, key: str, dest: Path, build: Callable[[Path], None]) -> bool:
        """Make `dest` hold the output for `key`: copied from a sound cache entry (True) or built by `build`."""
        entry = self.entry(name, key)
        if self.mode == CacheMode.on and entry.is_dir():
            problem = damage(entry)
            if problem is None:
                with atomic_dir(dest) as out:
                    shutil.copytree(entry, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(HASHES))
                return True
            log.warning("cache: entry %s/%s is damaged (%s): rebuilding it", name, key[:12], problem)
        with atomic_dir(dest) as out:
            build(out)
        if self.mode != CacheMode.off:
            with atomic_dir(entry) as stored:
                shutil.copytree(dest, stored, dirs_exist_ok=True)
                write_json(stored / HASHES, file_hashes(stored))
        return False

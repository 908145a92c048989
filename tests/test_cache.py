"""The stage cache: hashes recorded when an entry is stored and checked on every hit; a damaged entry is rebuilt
with a warning; a hit is a copy, so damaging an entry cannot change an earlier run's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cache import HASHES, StageCache
from pipeline.config import CacheMode


def build(out: Path) -> None:
    (out / "dataset").mkdir()
    (out / "dataset" / "data.arrow").write_bytes(b"rows " * 100)
    (out / "stats.json").write_text('{"n": 100}')


@pytest.mark.parametrize(
    ("harm", "problem"),
    [
        (lambda e: (e / "dataset" / "data.arrow").write_bytes(b"rows " * 50), "dataset/data.arrow changed"),
        (lambda e: (e / "dataset" / "data.arrow").write_bytes(b"ROWS " * 100), "dataset/data.arrow changed"),
        (lambda e: (e / "stats.json").unlink(), "stats.json missing"),
        (lambda e: (e / "extra.bin").write_bytes(b"?"), "extra.bin not stored with it"),
        (lambda e: (e / HASHES).unlink(), f"no readable {HASHES}"),
    ],
    ids=["truncated", "same-size", "missing", "added", "no-hashes"],
)
def test_a_damaged_entry_is_rebuilt_with_a_warning(tmp_path, caplog, harm, problem):
    cache = StageCache(tmp_path / "cache", CacheMode.on)
    calls = []

    def counted(out: Path) -> None:
        calls.append(out)
        build(out)

    assert cache.materialise("tokenize", "k" * 64, tmp_path / "run1" / "tokenize", counted) is False
    harm(cache.entry("tokenize", "k" * 64))
    assert cache.materialise("tokenize", "k" * 64, tmp_path / "run2" / "tokenize", counted) is False
    assert len(calls) == 2 and f"cache: entry tokenize/kkkkkkkkkkkk is damaged ({problem}" in caplog.text
    assert (tmp_path / "run2" / "tokenize" / "dataset" / "data.arrow").read_bytes() == b"rows " * 100
    # The rebuilt entry is sound again: the next run hits it.
    assert cache.materialise("tokenize", "k" * 64, tmp_path / "run3" / "tokenize", counted) is True
    assert len(calls) == 2 and not (tmp_path / "run3" / "tokenize" / HASHES).exists()


def test_a_hit_shares_no_bytes_with_the_entry(tmp_path):
    cache = StageCache(tmp_path / "cache", CacheMode.on)
    cache.materialise("split", "k", tmp_path / "run1" / "split", build)
    assert cache.materialise("split", "k", tmp_path / "run2" / "split", build) is True
    entry_file = cache.entry("split", "k") / "dataset" / "data.arrow"
    for run in ("run1", "run2"):
        run_file = tmp_path / run / "split" / "dataset" / "data.arrow"
        assert run_file.stat().st_ino != entry_file.stat().st_ino
    with open(entry_file, "r+b") as f:  # damage the entry in place
        f.write(b"XXXXX")
    assert (tmp_path / "run2" / "split" / "dataset" / "data.arrow").read_bytes() == b"rows " * 100

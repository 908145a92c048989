"""Atomic outputs: a crash mid-write leaves the previous version intact and no partial directory."""

from __future__ import annotations

import os

import pytest

from pipeline.atomic import atomic_dir, read_json, write_json


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

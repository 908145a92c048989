"""A run directory's integrity: one run at a time in it (two runs started in the same `hydra.run.dir` would
interleave their stage outputs and leave one run's config beside the other's results), and resume only onto the
run it was made by."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.atomic import lock_holder, read_json, write_bytes
from pipeline.errors import PipelineError


@contextmanager
def holding(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory for the run's lifetime; a second run there fails at once.

    The lock is flock(2) on the directory itself (no lock file to leave behind; the kernel drops it when the
    process dies, SIGKILL included). Hydra writes a run's `.hydra/*.yaml` before the run can try the lock, so
    a rejected second run has already overwritten the holder's copies: the holder restores its own at its end.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PipelineError(
            f"hydra.run.dir: {run_dir} is in use by another run ({lock_holder(run_dir)}); "
            "wait for it to end, or choose another directory"
        ) from None
    own = {path: path.read_bytes() for path in sorted((run_dir / ".hydra").glob("*.yaml"))}
    try:
        yield
    finally:
        for path, data in own.items():
            if not path.is_file() or path.read_bytes() != data:
                write_bytes(path, data)
        os.close(fd)


# What may change when a run is resumed: how long it trains, what is logged and where, which stages run. Anything
# else (data, model, method, seed, ...) would continue a run on other inputs than those it was made with.
RESUMABLE_CHANGES = (
    "resume",
    "stages",
    "cache",
    "train.max_steps",
    "train.epochs",
    "train.logging_steps",
    "train.save_total_limit",
    "train.dataloader_num_workers",
    "tracking.",
    "trial.",
    "paths.",
)


def check_resumable(cfg: DictConfig, run_dir: Path) -> None:
    """resume=true needs a run in `run_dir` (its manifest) made with the same config, but for RESUMABLE_CHANGES."""
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        raise PipelineError(
            f"resume: {run_dir} holds no earlier run (no manifest.json); point hydra.run.dir at the run to "
            "continue, or drop resume=true to start a new one"
        )
    before = _flat(read_json(manifest)["config"])
    now = _flat(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    changed = [
        key
        for key in sorted(set(before) | set(now))
        if before.get(key) != now.get(key) and not key.startswith(RESUMABLE_CHANGES)
    ]
    if changed:
        shown = ", ".join(f"{key} ({before.get(key)!r} -> {now.get(key)!r})" for key in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise PipelineError(
            f"resume: the config differs from the one {run_dir} was made with: {shown}{more}; "
            f"on resume only {', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in RESUMABLE_CHANGES)} "
            "may change"
        )


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    return {k: v for key, child in tree.items() for k, v in _flat(child, f"{prefix}{key}.").items()}

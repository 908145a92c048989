"""Seeded carving of train/validation/test from a source's frames, stratified by a column when the task has one."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.data import SPLITS
from pipeline.errors import PipelineError


def _carve(
    frame: pd.DataFrame, n_rows: int, seed: int, what: str, stratify_by: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, carved) with `n_rows` rows carved off, stratified by `stratify_by` when given."""
    from sklearn.model_selection import train_test_split

    strata = frame[stratify_by] if stratify_by else None
    try:
        rest, carved = train_test_split(frame, test_size=n_rows, random_state=seed, stratify=strata)
    except ValueError as exc:
        kind = "stratified " if stratify_by else ""
        raise PipelineError(f"data.{what}_fraction: cannot carve a {kind}{what} split ({exc})") from exc
    return rest, carved


def _cap(pool: pd.DataFrame, max_samples: int | None, seed: int, stratify_by: str | None) -> pd.DataFrame:
    """Sample of at most `max_samples` rows, stratified by origin (and `stratify_by` when given)."""
    if max_samples is None or len(pool) <= max_samples:
        return pool
    if max_samples <= 0:
        raise PipelineError(f"data.max_samples: {max_samples} must be positive")
    from sklearn.model_selection import train_test_split

    strata = pool["origin"] + "/" + pool[stratify_by].astype(str) if stratify_by else pool["origin"]
    kept, _ = train_test_split(pool, train_size=max_samples, random_state=seed, stratify=strata)
    return kept


def carve_splits(
    frames: dict[str, pd.DataFrame], data_cfg: Any, seed: int, stratify_by: str | None
) -> dict[str, pd.DataFrame]:
    """Keep the source's own splits, carve the missing ones (validation from train, test if absent).

    `frames` maps the source's split names (or "all" for one pool) to frames; each row gains `origin` and
    `source_row`, so every split row can be traced back to its source file and line.
    """
    pool = pd.concat(
        [frame.assign(origin=name, source_row=range(len(frame))) for name, frame in frames.items()],
        ignore_index=True,
    )
    pool = _cap(pool, data_cfg.max_samples, seed, stratify_by)
    for what in ("validation", "test"):
        fraction = getattr(data_cfg, f"{what}_fraction")
        if not 0.0 < fraction < 0.5:
            raise PipelineError(f"data.{what}_fraction: {fraction} must be between 0 and 0.5")
    splits = {name: pool[pool["origin"] == name] for name in frames}
    if "all" in splits:  # one pool: carve test, then validation, as fractions of the whole pool
        n_all = len(splits["all"])
        rest, splits["test"] = _carve(
            splits.pop("all"), round(data_cfg.test_fraction * n_all), seed, "test", stratify_by
        )
        n_val = round(data_cfg.validation_fraction * n_all)
        splits["train"], splits["validation"] = _carve(rest, n_val, seed, "validation", stratify_by)
    elif "validation" not in splits:
        n_val = round(data_cfg.validation_fraction * len(splits["train"]))
        splits["train"], splits["validation"] = _carve(splits["train"], n_val, seed, "validation", stratify_by)
    if "test" not in splits:
        splits["validation"], splits["test"] = _carve(
            splits["validation"], len(splits["validation"]) // 2, seed, "test", stratify_by
        )
    return {name: splits[name].sort_values(["origin", "source_row"]).reset_index(drop=True) for name in SPLITS}

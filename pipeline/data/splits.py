"""Seeded carving of train/validation/test from a source's frames, stratified by a column when the task has one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.data import SPLITS
from pipeline.errors import PipelineError

if TYPE_CHECKING:  # pandas (~0.3 s) loads where a frame is built, not when configs register
    import pandas as pd


def _stratified(
    frame: pd.DataFrame, strata: pd.Series | None, n_rows: int, field_name: str, what: str, seed: int, **sizes: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """sklearn's train_test_split, with the ways it fails on small data checked first and said in our terms."""
    from sklearn.model_selection import train_test_split

    if n_rows < 1 or n_rows >= len(frame):
        raise PipelineError(
            f"{field_name}: {what} would have {n_rows} of {len(frame)} rows; expected at least 1 and fewer than all "
            "(use more rows, data.max_samples, or another fraction)"
        )
    if strata is not None:
        counts = strata.value_counts()
        if counts.min() < 2:
            stratum = counts.idxmin()
            name = frame.loc[strata == stratum, "label"].iloc[0] if "label" in frame else stratum
            raise PipelineError(
                f"{field_name}: class {str(name)!r} has {counts.min()} row in the pool {what} is drawn from; "
                "a stratified split needs at least 2 per class (add rows, drop the class, or raise data.max_samples)"
            )
        if not len(counts) <= n_rows <= len(frame) - len(counts):
            raise PipelineError(
                f"{field_name}: {what} would have {n_rows} of {len(frame)} rows, too few to hold each of the "
                f"{len(counts)} classes on both sides of a stratified split; use more rows or another fraction"
            )
    return train_test_split(frame, random_state=seed, stratify=strata, **sizes)


def _carve(
    frame: pd.DataFrame, n_rows: int, seed: int, what: str, stratify_by: str | None, capped: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, carved) with `n_rows` rows carved off, stratified by `stratify_by` when given. A split too small
    for rows that data.max_samples `capped` is that field's doing, so the error names it rather than the fraction."""
    strata = frame[stratify_by] if stratify_by else None
    field = "data.max_samples" if capped else f"data.{what}_fraction"
    return _stratified(frame, strata, n_rows, field, f"the {what} split", seed, test_size=n_rows)


def _cap(pool: pd.DataFrame, max_samples: int | None, seed: int, stratify_by: str | None) -> pd.DataFrame:
    """Sample of at most `max_samples` rows, stratified by origin (and `stratify_by` when given)."""
    if max_samples is None or len(pool) <= max_samples:
        return pool
    strata = pool["origin"] + "/" + pool[stratify_by].astype(str) if stratify_by else pool["origin"]
    kept, _ = _stratified(pool, strata, max_samples, "data.max_samples", "the sample", seed, train_size=max_samples)
    return kept


def carve_splits(
    frames: dict[str, pd.DataFrame], data_cfg: Any, seed: int, stratify_by: str | None
) -> dict[str, pd.DataFrame]:
    """Keep the source's own splits, carve the missing ones (validation from train, test if absent).

    `frames` maps the source's split names (or "all" for one pool) to frames; each row gains `origin` and
    `source_row`, so every split row can be traced back to its source file and line.
    """
    import pandas as pd

    pool = pd.concat(
        [frame.assign(origin=name, source_row=range(len(frame))) for name, frame in frames.items()],
        ignore_index=True,
    )
    capped = data_cfg.max_samples is not None and len(pool) > data_cfg.max_samples
    pool = _cap(pool, data_cfg.max_samples, seed, stratify_by)
    splits = {name: pool[pool["origin"] == name] for name in frames}
    if "all" in splits:  # one pool: carve test, then validation, as fractions of the whole pool
        n_all = len(splits["all"])
        rest, splits["test"] = _carve(
            splits.pop("all"), round(data_cfg.test_fraction * n_all), seed, "test", stratify_by, capped
        )
        n_val = round(data_cfg.validation_fraction * n_all)
        splits["train"], splits["validation"] = _carve(rest, n_val, seed, "validation", stratify_by, capped)
    elif "validation" not in splits:
        n_val = round(data_cfg.validation_fraction * len(splits["train"]))
        splits["train"], splits["validation"] = _carve(splits["train"], n_val, seed, "validation", stratify_by, capped)
    if "test" not in splits:
        splits["validation"], splits["test"] = _carve(
            splits["validation"], len(splits["validation"]) // 2, seed, "test", stratify_by, capped
        )
    return {name: splits[name].sort_values(["origin", "source_row"]).reset_index(drop=True) for name in SPLITS}

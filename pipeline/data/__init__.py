"""Data sources: each turns `cfg.data` into labelled text frames; `load_raw` validates what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import DataSource
from pipeline.errors import PipelineError

TEXT, LABEL = "text", "label"
SPLITS = ("train", "validation", "test")


@dataclass
class RawData:
    """Labelled texts as loaded, before splitting.

    frames: split name (train/validation/test, or "all" for one unsplit pool) -> frame with
    `text` and `label` columns (labels as given by the source); label_names: the class list if the
    source defines one; files: the input files read, for provenance.
    """

    frames: dict[str, pd.DataFrame]
    label_names: list[str] | None = None
    files: list[Path] = field(default_factory=list)


def load_raw(data_cfg: Any) -> RawData:
    """Load the configured source and check that every text is non-empty and every label known."""
    from pipeline.data import ag_news_csv, files, hub

    loaders = {
        DataSource.hub: hub.load,
        DataSource.ag_news_csv: ag_news_csv.load,
        DataSource.file: files.load,
    }
    raw = loaders[DataSource(data_cfg.source)](data_cfg)
    if data_cfg.label_names:
        raw.label_names = list(data_cfg.label_names)
    for name, frame in raw.frames.items():
        check_frame(frame, origin=name)
    return raw


def check_frame(frame: pd.DataFrame, origin: str) -> None:
    """Reject empty texts and missing labels, naming the origin and the first offending row."""
    if frame.empty:
        raise PipelineError(f"data: {origin} has no rows")
    texts = frame[TEXT]
    empty = texts.isna() | (texts.astype(str).str.strip() == "")
    if empty.any():
        raise PipelineError(
            f"data.text_column: {int(empty.sum())} empty text(s) in {origin} (first at row {int(empty.idxmax())})"
        )
    missing = frame[LABEL].isna()
    if missing.any():
        raise PipelineError(
            f"data.label_column: {int(missing.sum())} missing label(s) in {origin} "
            f"(first at row {int(missing.idxmax())})"
        )


def require_columns(frame: pd.DataFrame, columns: dict[str, str], origin: str) -> pd.DataFrame:
    """Select and rename source columns to text/label; `columns` maps config field -> source column."""
    for field_name, column in columns.items():
        if column not in frame.columns:
            raise PipelineError(
                f"data.{field_name}: column {column!r} not in {origin} (columns: {', '.join(map(str, frame.columns))})"
            )
    return frame[[columns["text_column"], columns["label_column"]]].set_axis([TEXT, LABEL], axis=1)


def require_file(path: Path, field_name: str, what: str) -> Path:
    if not path.is_file():
        raise PipelineError(f"{field_name}: file {str(path)!r} not found (expected {what})")
    return path

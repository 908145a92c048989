"""Data sources: each turns `cfg.data` into frames; `load_raw` validates what the task needs of them.

The configured text and label columns become `text` and `label`; every other column is kept, for the generative
tasks' prompt templates (AG News: `title`, `description`; Alpaca: `instruction`, `input`, `output`).
"""

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

    frames: split name (train/validation/test, or "all" for one unsplit pool) -> frame with the source's
    columns, the configured text and label ones renamed `text` and `label` (labels as given by the source);
    label_names: the class list if the source defines one; files: the input files read, for provenance.
    """

    frames: dict[str, pd.DataFrame]
    label_names: list[str] | None = None
    files: list[Path] = field(default_factory=list)


CLASSIFICATION_FIELDS = ("text_column", "label_column")  # what a classifier needs of every source


def load_raw(data_cfg: Any, required: tuple[str, ...] = CLASSIFICATION_FIELDS) -> RawData:
    """Load the configured source; the `required` column fields must exist, with no empty text or missing label."""
    from pipeline.data import ag_news_csv, files, hub

    loaders = {
        DataSource.hub: hub.load,
        DataSource.ag_news_csv: ag_news_csv.load,
        DataSource.file: files.load,
    }
    raw = loaders[DataSource(data_cfg.source)](data_cfg, required)
    if data_cfg.label_names:
        raw.label_names = list(data_cfg.label_names)
    for name, frame in raw.frames.items():
        check_frame(frame, origin=name, required=required)
    return raw


def check_frame(frame: pd.DataFrame, origin: str, required: tuple[str, ...]) -> None:
    """Reject empty texts and missing labels (where required), naming the origin and the first offending row."""
    if frame.empty:
        raise PipelineError(f"data: {origin} has no rows")
    if "text_column" in required:
        texts = frame[TEXT]
        empty = texts.isna() | (texts.astype(str).str.strip() == "")
        if empty.any():
            raise PipelineError(
                f"data.text_column: {int(empty.sum())} empty text(s) in {origin} (first at row {int(empty.idxmax())})"
            )
    missing = frame[LABEL].isna() if "label_column" in required else pd.Series(False, index=frame.index)
    if missing.any():
        raise PipelineError(
            f"data.label_column: {int(missing.sum())} missing label(s) in {origin} "
            f"(first at row {int(missing.idxmax())})"
        )


def standard_columns(frame: pd.DataFrame, data_cfg: Any, required: tuple[str, ...], origin: str) -> pd.DataFrame:
    """Rename the configured text/label columns to `text`/`label` (the `required` ones must exist); keep the rest."""
    canonical = {"text_column": TEXT, "label_column": LABEL}
    for field_name in required:
        column = getattr(data_cfg, field_name)
        if column not in frame.columns:
            raise PipelineError(
                f"data.{field_name}: column {column!r} not in {origin} (columns: {', '.join(map(str, frame.columns))})"
            )
    renames = {getattr(data_cfg, f): name for f, name in canonical.items() if getattr(data_cfg, f) in frame.columns}
    shadowed = [name for name in renames.values() if name in frame.columns and name not in renames]
    return frame.drop(columns=shadowed).rename(columns=renames)


def require_file(path: Path, field_name: str, what: str) -> Path:
    if not path.is_file():
        raise PipelineError(f"{field_name}: file {str(path)!r} not found (expected {what})")
    return path


def label_list(raw: RawData) -> list[str]:
    """Class names: the source's list, else the sorted distinct labels (numerically when all are ints)."""
    seen = pd.concat([f[LABEL] for f in raw.frames.values()]).unique().tolist()
    if raw.label_names:
        known = set(raw.label_names)
        unknown = [v for v in seen if str(v) not in known]
        if unknown:
            raise PipelineError(
                f"data.label_column: labels {sorted(map(str, unknown))[:5]} are not in the class list {raw.label_names}"
            )
        return list(raw.label_names)
    try:
        return [str(v) for v in sorted(seen, key=lambda v: int(v))]
    except (TypeError, ValueError):
        return sorted(map(str, seen))

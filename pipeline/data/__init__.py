"""Data sources: each turns `cfg.data` into frames; `load_raw` validates what the task needs of them.

The configured text and label columns become `text` and `label`; every other column is kept, for the generative
tasks' prompt templates (AG News: `title`, `description`; Alpaca: `instruction`, `input`, `output`).
"""

from __future__ import annotations

import logging
import numbers
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import DataSource
from pipeline.errors import PipelineError

if TYPE_CHECKING:  # pandas (~0.3 s) loads where a frame is built, not when configs register
    import pandas as pd

TEXT, LABEL = "text", "label"
log = logging.getLogger("pipeline")
SPLITS = ("train", "validation", "test")


@dataclass
class RawData:
    """Labelled texts as loaded, before splitting.

    frames: split name (train/validation/test, or "all" for one unsplit pool) -> frame with the source's
    columns, the configured text and label ones renamed `text` and `label` (labels as class names, `label_name`);
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
        if LABEL in frame.columns and frame[LABEL].notna().all():
            frame[LABEL] = frame[LABEL].map(label_name)
    if "label_column" in required:
        check_classes(label_list(raw))
    return raw


def label_name(v: Any) -> str:
    """A label as a class name: 1, 1.0 and "1" are one class, "1"; text labels lose surrounding spaces."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def check_classes(labels: list[str]) -> None:
    """At least two classes; classes that differ only in case or spacing stay apart, with a warning naming them."""
    if len(labels) < 2:
        raise PipelineError(
            f"data.label_column: the data has {len(labels)} class ({', '.join(map(repr, labels))}); "
            "a classifier needs at least two"
        )
    groups: dict[str, list[str]] = defaultdict(list)
    for name in labels:
        groups[" ".join(name.casefold().split())].append(name)
    for names in (g for g in groups.values() if len(g) > 1):
        log.warning(
            "data.label_column: classes %s differ only in case or spacing; they are trained as separate classes "
            "(fix the labels, or list the classes in data.label_names)",
            " and ".join(map(repr, names)),
        )


def check_frame(frame: pd.DataFrame, origin: str, required: tuple[str, ...]) -> None:
    """Reject empty texts and missing labels (where required), naming the origin and the first offending row."""
    import pandas as pd

    if frame.empty:
        raise PipelineError(f"data: {origin} has no rows")
    if "text_column" in required:
        texts = frame[TEXT]
        if not (pd.api.types.is_object_dtype(texts) or pd.api.types.is_string_dtype(texts)):
            raise PipelineError(
                f"data.text_column: the text column of {origin} holds {texts.dtype} values, not text; "
                "name the column with the texts in data.text_column"
            )
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
    """`path` if it is a regular file; otherwise an error saying whether it is missing, a directory or a device."""
    if not path.is_file():
        found = "not found" if not path.exists() else "is a directory" if path.is_dir() else "is not a regular file"
        raise PipelineError(f"{field_name}: file {str(path)!r} {found} (expected {what})")
    return path


def label_list(raw: RawData) -> list[str]:
    """Class names: the source's list, else the sorted distinct labels (numerically when all are ints)."""
    import pandas as pd

    seen = pd.concat([f[LABEL] for f in raw.frames.values()]).map(label_name).unique().tolist()
    if raw.label_names:
        known = set(raw.label_names)
        unknown = [v for v in seen if v not in known]
        if unknown:
            raise PipelineError(
                f"data.label_column: labels {sorted(unknown)[:5]} are not in the class list {raw.label_names}"
            )
        return list(raw.label_names)
    try:
        return sorted(seen, key=int)
    except ValueError:
        return sorted(seen)

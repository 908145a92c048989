"""Bring-your-own data: CSV, TSV, JSONL or Parquet, one file to split or one file per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.data import SPLITS, RawData, require_file, standard_columns
from pipeline.errors import PipelineError

# Each reader takes the path and whether a blank CSV/TSV line is a row (an empty text) rather than nothing.
_READERS = {
    ".csv": lambda p, blank: pd.read_csv(p, skip_blank_lines=not blank),
    ".tsv": lambda p, blank: pd.read_csv(p, sep="\t", skip_blank_lines=not blank),
    ".jsonl": lambda p, blank: pd.read_json(p, lines=True),
    ".json": lambda p, blank: pd.read_json(p, lines=True),
    ".parquet": lambda p, blank: pd.read_parquet(p),
}


def read_table(path: Path, field_name: str, blank_lines_are_rows: bool = False) -> pd.DataFrame:
    """Read a CSV/TSV/JSONL/Parquet file; errors name `field_name` (the config key or CLI argument).

    blank_lines_are_rows: keep blank CSV/TSV lines as rows of empty cells, so rows line up with the file's lines
    (predict writes one output row per input row); otherwise pandas drops them.
    """
    require_file(path, field_name, "a .csv, .tsv, .jsonl or .parquet file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise PipelineError(f"{field_name}: unsupported file type {path.suffix!r}; expected one of {sorted(_READERS)}")
    try:
        return reader(path, blank_lines_are_rows)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{field_name}: cannot read {path} ({str(exc).splitlines()[0]})") from exc


def load(data_cfg: Any, required: tuple[str, ...]) -> RawData:
    per_split = {s: getattr(data_cfg, f"{s}_path") for s in SPLITS if getattr(data_cfg, f"{s}_path")}
    if data_cfg.path and per_split:
        raise PipelineError("data.path: set either data.path or data.<split>_path, not both")
    if data_cfg.path:
        sources = {"all": ("data.path", data_cfg.path)}
    elif per_split:
        if "train" not in per_split:
            raise PipelineError("data.train_path: required when files are given per split")
        sources = {split: (f"data.{split}_path", path) for split, path in per_split.items()}
    else:
        raise PipelineError("data.path: a CSV/JSONL/Parquet file is required for data.source=file")
    frames, files = {}, []
    for split, (field_name, raw_path) in sources.items():
        path = Path(raw_path).expanduser()
        frames[split] = standard_columns(read_table(path, field_name), data_cfg, required, str(path))
        files.append(path)
    return RawData(frames=frames, files=files)

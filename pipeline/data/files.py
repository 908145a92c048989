"""Bring-your-own data: CSV, TSV, JSONL or Parquet, one file to split or one file per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.data import SPLITS, RawData, require_file, standard_columns
from pipeline.errors import PipelineError

# Each reader takes the path, whether a blank CSV/TSV line is a row (an empty text) rather than nothing, and the
# text encoding.
_READERS = {
    ".csv": lambda p, blank, enc: pd.read_csv(p, skip_blank_lines=not blank, encoding=enc),
    ".tsv": lambda p, blank, enc: pd.read_csv(p, sep="\t", skip_blank_lines=not blank, encoding=enc),
    ".jsonl": lambda p, blank, enc: pd.read_json(p, lines=True, encoding=enc),
    ".json": lambda p, blank, enc: pd.read_json(p, lines=True, encoding=enc),
    ".parquet": lambda p, blank, enc: pd.read_parquet(p),
}


def read_table(
    path: Path, field_name: str, blank_lines_are_rows: bool = False, encoding: str = "utf-8"
) -> pd.DataFrame:
    """Read a CSV/TSV/JSONL/Parquet file; errors name `field_name` (the config key or CLI argument).

    blank_lines_are_rows: keep blank CSV/TSV lines as rows of empty cells, so rows line up with the file's lines
    (predict writes one output row per input row); otherwise pandas drops them.
    """
    require_file(path, field_name, "a .csv, .tsv, .jsonl or .parquet file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise PipelineError(f"{field_name}: unsupported file type {path.suffix!r}; expected one of {sorted(_READERS)}")
    try:
        return reader(path, blank_lines_are_rows, encoding)
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.start + 1]
        fix = "set data.encoding to the file's encoding (e.g. latin-1)" if field_name.startswith("data.") else None
        raise PipelineError(
            f"{field_name}: {path} is not {encoding} text (it holds byte {bad!r}); {fix or 're-save it as UTF-8'}"
        ) from exc
    except LookupError as exc:
        raise PipelineError(f"data.encoding: {encoding!r} is not a text encoding Python knows") from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:  # pyarrow's ArrowInvalid is a ValueError
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
        frames[split] = standard_columns(
            read_table(path, field_name, encoding=data_cfg.encoding), data_cfg, required, str(path)
        )
        files.append(path)
    return RawData(frames=frames, files=files)

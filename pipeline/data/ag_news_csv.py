"""AG News in its original distribution format: headerless train.csv/test.csv plus classes.txt.

Texts are "title description" joined by one space, as in the Hub copy (fancyzhx/ag_news), so
local and Hub runs see the same strings; `title` and `description` are kept as columns of their own too
(the generative experiments: description -> title).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.data import RawData, require_file
from pipeline.errors import PipelineError


def load(data_cfg: Any, required: tuple[str, ...]) -> RawData:
    """Every column is known (class, title, description), so `required` always holds."""
    if not data_cfg.dir:
        raise PipelineError("data.dir: a directory with train.csv and/or test.csv is required")
    root = Path(data_cfg.dir).expanduser()
    if not root.is_dir():
        raise PipelineError(f"data.dir: directory {str(root)!r} not found (expected AG News CSV files)")
    classes = require_file(root / "classes.txt", "data.dir", "one class name per line")
    names = [line.strip() for line in classes.read_text(encoding="utf-8").splitlines() if line.strip()]
    frames, files = {}, [classes]
    for split in ("train", "test"):
        path = root / f"{split}.csv"
        if path.is_file():
            frames[split] = _read(path, names)
            files.append(path)
    if not frames:
        raise PipelineError(f"data.dir: neither train.csv nor test.csv in {str(root)!r}")
    if len(frames) == 1:  # one file: the split stage carves all three splits from it
        frames = {"all": next(iter(frames.values()))}
    return RawData(frames=frames, label_names=names, files=files)


def _read(path: Path, names: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, quotechar='"')
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PipelineError(f"data.dir: {path} is not AG News CSV ({exc})") from exc
    if frame.shape[1] != 3:
        raise PipelineError(f"data.dir: {path} has {frame.shape[1]} columns; expected class index, title, description")
    index = pd.to_numeric(frame[0], errors="coerce")
    bad = index.isna() | ~index.isin(range(1, len(names) + 1))
    if bad.any():
        row = int(bad.idxmax())
        raise PipelineError(
            f"data.dir: {path} row {row} has class index {frame.at[row, 0]!r}; expected 1..{len(names)} (classes.txt)"
        )
    title, description = frame[1].str.strip(), frame[2].str.strip()
    text = (title + " " + description).str.strip()
    labels = [names[int(i) - 1] for i in index]
    return pd.DataFrame({"text": text, "label": labels, "title": title, "description": description})

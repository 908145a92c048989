"""Hugging Face Hub datasets (e.g. fancyzhx/ag_news): the real loading path for users with Hub access."""

from __future__ import annotations

from typing import Any

from datasets import ClassLabel, load_dataset

from pipeline.data import LABEL, SPLITS, RawData, standard_columns
from pipeline.errors import PipelineError


def load(data_cfg: Any, required: tuple[str, ...]) -> RawData:
    if not data_cfg.name:
        raise PipelineError("data.name: a Hub dataset id is required for data.source=hub")
    try:
        dataset = load_dataset(data_cfg.name)
    except Exception as exc:  # the Hub raises many types (connection, offline mode, not found)
        raise PipelineError(
            f"data.name: cannot load Hub dataset {data_cfg.name!r} ({type(exc).__name__}); "
            "offline, use data=ag_news_csv data.dir=... or data=csv data.path=..."
        ) from exc
    frames = {
        split: standard_columns(dataset[split].to_pandas(), data_cfg, required, f"{data_cfg.name}[{split}]")
        for split in SPLITS
        if split in dataset
    }
    if "train" not in frames:
        raise PipelineError(f"data.name: {data_cfg.name!r} has no train split (splits: {list(dataset)})")
    feature = dataset["train"].features.get(data_cfg.label_column)
    names = list(feature.names) if isinstance(feature, ClassLabel) else None
    if names:  # ClassLabel stores ints; the class list is the feature's names
        for frame in frames.values():
            frame[LABEL] = frame[LABEL].map(lambda i: names[int(i)])
    return RawData(frames=frames, label_names=names)

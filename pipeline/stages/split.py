"""split: source rows -> seeded train/validation/test (the task draws them, stratified where it has classes),
with a duplicate report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import Dataset, DatasetDict

from pipeline.atomic import read_json, write_json
from pipeline.context import RunContext
from pipeline.data import SPLITS, TEXT, load_raw
from pipeline.errors import PipelineError
from pipeline.fingerprints import digest, split_key
from pipeline.results import StageResult
from pipeline.tasks import Task


@dataclass
class SplitResult(StageResult):
    sizes: dict[str, int]
    class_counts: dict[str, dict[str, int]]  # empty for a task without classes
    duplicates: dict[str, int]  # cross-split exact duplicates found (before any drop)
    dropped: int
    index_sha256: dict[str, str]  # per split, SHA-256 of its (origin, source_row) list
    cache_hit: bool

    def metrics(self) -> dict[str, float]:
        out = {f"{split}_size": float(n) for split, n in self.sizes.items()}
        out["cache_hit"] = float(self.cache_hit)
        out.update({f"duplicates_{k}": float(v) for k, v in self.duplicates.items()})
        out["duplicates_dropped"] = float(self.dropped)
        return out

    def manifest(self) -> dict[str, Any]:
        return {"splits_index_sha256": self.index_sha256}  # the exact rows of each split, for comparing runs


def find_duplicates(splits: dict[str, pd.DataFrame], drop: bool) -> tuple[dict[str, pd.DataFrame], dict[str, int], int]:
    """Count exact-duplicate texts within and across splits; drop later-split copies when asked."""
    counts: dict[str, int] = {f"within_{s}": int(splits[s][TEXT].duplicated().sum()) for s in SPLITS}
    seen: set[str] = set()
    dropped = 0
    for split in SPLITS:
        clash = splits[split][TEXT].isin(seen)
        if split != "train":
            counts[f"{split}_in_earlier_splits"] = int(clash.sum())
            if drop:
                dropped += int(clash.sum())
                splits[split] = splits[split][~clash].reset_index(drop=True)
        seen.update(splits[split][TEXT])
    return splits, counts, dropped


def build(cfg: Any, task: Task, out: Path) -> None:
    """Load, split and check the data; write the DatasetDict, report.json and the task's files into `out`."""
    raw = load_raw(cfg.data, task.data_fields)
    splits = task.split(raw, cfg)
    splits, duplicates, dropped = find_duplicates(splits, cfg.data.drop_cross_split_duplicates)
    for split, frame in splits.items():
        if frame.empty:
            raise PipelineError(f"data: the {split} split is empty; use more rows or larger fractions")
    index_sha256 = {s: digest(splits[s][["origin", "source_row"]].values.tolist()) for s in SPLITS}
    DatasetDict({s: Dataset.from_pandas(frame, preserve_index=False) for s, frame in splits.items()}).save_to_disk(
        str(out / "dataset")
    )
    task_report, task_files = task.describe_split(raw, splits, out)
    write_json(
        out / "report.json",
        {
            "sizes": {s: len(splits[s]) for s in SPLITS},
            **task_report,
            "duplicates": duplicates,
            "dropped": dropped,
            "index_sha256": index_sha256,
            "files": [str(f) for f in raw.files],
            "task_files": task_files,
        },
    )


def run(ctx: RunContext) -> SplitResult:
    key = split_key(ctx.cfg)
    hit = ctx.cache.materialise("split", key, ctx.layout.split, lambda out: build(ctx.cfg, ctx.task, out))
    report = read_json(ctx.layout.split / "report.json")
    ctx.tracker.params({**ctx.task.split_params(ctx), "data.files": report["files"]})
    ctx.tracker.artifact(ctx.layout.split / "report.json", "split")
    source = ctx.cfg.data.name or ctx.cfg.data.dir or ctx.cfg.data.path or ctx.cfg.data.train_path
    dataset = ctx.dataset("split")
    for split in SPLITS:
        frame = dataset[split].to_pandas().drop(columns=["origin", "source_row"])
        ctx.tracker.dataset(
            frame,
            name=f"{ctx.cfg.tracking.experiment}-{split}",
            source=str(source),
            context=split,
            targets=ctx.task.target_column,
        )
    for name in report["task_files"]:  # classification: labels.json
        ctx.tracker.artifact(ctx.layout.split / name, "split")
    return SplitResult(
        sizes=report["sizes"],
        class_counts=report.get("class_counts", {}),
        duplicates=report["duplicates"],
        dropped=report["dropped"],
        index_sha256=report["index_sha256"],
        cache_hit=hit,
    )

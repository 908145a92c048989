"""split: labelled texts -> stratified, seeded train/validation/test with a duplicate report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, load_from_disk
from sklearn.model_selection import train_test_split

from pipeline.atomic import read_json, write_json
from pipeline.context import RunContext
from pipeline.data import LABEL, SPLITS, TEXT, RawData, load_raw
from pipeline.errors import PipelineError
from pipeline.fingerprints import digest, split_key


@dataclass
class SplitResult:
    sizes: dict[str, int]
    class_counts: dict[str, dict[str, int]]
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


def _stratified(frame: pd.DataFrame, n_rows: int, seed: int, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, carved) with `n_rows` rows carved off, stratified by label."""
    try:
        rest, carved = train_test_split(frame, test_size=n_rows, random_state=seed, stratify=frame["label_id"])
    except ValueError as exc:
        raise PipelineError(f"data.{what}_fraction: cannot carve a stratified {what} split ({exc})") from exc
    return rest, carved


def _cap(pool: pd.DataFrame, max_samples: int | None, seed: int) -> pd.DataFrame:
    """Stratified (by origin and label) sample of at most `max_samples` rows."""
    if max_samples is None or len(pool) <= max_samples:
        return pool
    if max_samples <= 0:
        raise PipelineError(f"data.max_samples: {max_samples} must be positive")
    strata = pool["origin"] + "/" + pool["label_id"].astype(str)
    kept, _ = train_test_split(pool, train_size=max_samples, random_state=seed, stratify=strata)
    return kept


def make_splits(raw: RawData, labels: list[str], data_cfg: Any, seed: int) -> dict[str, pd.DataFrame]:
    """Keep the source's own splits, carve the missing ones (validation from train, test if absent)."""
    index = {name: i for i, name in enumerate(labels)}
    pool = pd.concat(
        [
            frame.assign(
                origin=name,
                source_row=np.arange(len(frame)),
                label_id=frame[LABEL].map(lambda v: index[str(v)]),
            )
            for name, frame in raw.frames.items()
        ],
        ignore_index=True,
    )
    pool = _cap(pool, data_cfg.max_samples, seed)
    for what in ("validation", "test"):
        fraction = getattr(data_cfg, f"{what}_fraction")
        if not 0.0 < fraction < 0.5:
            raise PipelineError(f"data.{what}_fraction: {fraction} must be between 0 and 0.5")
    splits = {name: pool[pool["origin"] == name] for name in raw.frames}
    if "all" in splits:  # one pool: carve test, then validation, as fractions of the whole pool
        n_all = len(splits["all"])
        rest, splits["test"] = _stratified(splits.pop("all"), round(data_cfg.test_fraction * n_all), seed, "test")
        n_val = round(data_cfg.validation_fraction * n_all)
        splits["train"], splits["validation"] = _stratified(rest, n_val, seed, "validation")
    elif "validation" not in splits:
        n_val = round(data_cfg.validation_fraction * len(splits["train"]))
        splits["train"], splits["validation"] = _stratified(splits["train"], n_val, seed, "validation")
    if "test" not in splits:
        splits["validation"], splits["test"] = _stratified(
            splits["validation"], len(splits["validation"]) // 2, seed, "test"
        )
    return {name: splits[name].sort_values(["origin", "source_row"]).reset_index(drop=True) for name in SPLITS}


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


def build(cfg: Any, out: Path) -> None:
    """Load, split and check the data; write the DatasetDict, labels.json and report.json into `out`."""
    raw = load_raw(cfg.data)
    labels = label_list(raw)
    splits = make_splits(raw, labels, cfg.data, cfg.seed)
    splits, duplicates, dropped = find_duplicates(splits, cfg.data.drop_cross_split_duplicates)
    for split, frame in splits.items():
        if frame.empty:
            raise PipelineError(f"data: the {split} split is empty; use more rows or larger fractions")
    index_sha256 = {s: digest(splits[s][["origin", "source_row"]].values.tolist()) for s in SPLITS}
    DatasetDict(
        {
            s: Dataset.from_pandas(
                frame[[TEXT, "label_id", "origin", "source_row"]].rename(columns={"label_id": LABEL}),
                preserve_index=False,
            )
            for s, frame in splits.items()
        }
    ).save_to_disk(str(out / "dataset"))
    write_json(out / "labels.json", labels)
    write_json(
        out / "report.json",
        {
            "sizes": {s: len(splits[s]) for s in SPLITS},
            "class_counts": {s: dict(Counter(labels[i] for i in splits[s]["label_id"])) for s in SPLITS},
            "duplicates": duplicates,
            "dropped": dropped,
            "index_sha256": index_sha256,
            "files": [str(f) for f in raw.files],
        },
    )


def run(ctx: RunContext) -> SplitResult:
    hit = ctx.cache.materialise("split", split_key(ctx.cfg), ctx.layout.split, lambda out: build(ctx.cfg, out))
    report = read_json(ctx.layout.split / "report.json")
    ctx.tracker.params({"data.labels": ctx.labels, "data.files": report["files"]})
    ctx.tracker.artifact(ctx.layout.split / "report.json", "split")
    source = ctx.cfg.data.name or ctx.cfg.data.dir or ctx.cfg.data.path or ctx.cfg.data.train_path
    dataset = load_from_disk(str(ctx.layout.split / "dataset"))
    for split in SPLITS:
        frame = dataset[split].to_pandas()[[TEXT, LABEL]]
        ctx.tracker.dataset(frame, name=f"{ctx.cfg.tracking.experiment}-{split}", source=str(source), context=split)
    ctx.tracker.artifact(ctx.layout.split / "labels.json", "split")
    return SplitResult(
        sizes=report["sizes"],
        class_counts=report["class_counts"],
        duplicates=report["duplicates"],
        dropped=report["dropped"],
        index_sha256=report["index_sha256"],
        cache_hit=hit,
    )

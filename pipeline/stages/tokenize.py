"""tokenize: split texts -> token ids truncated to model.max_length; padding happens per batch later."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasets import load_from_disk

from pipeline.atomic import atomic_dir, write_json
from pipeline.context import RunContext
from pipeline.models import load_tokenizer


@dataclass
class TokenizeResult:
    length_stats: dict[str, float]  # untruncated token lengths over all splits

    def metrics(self) -> dict[str, float]:
        return {f"tokens_{k}": v for k, v in self.length_stats.items()}


def run(ctx: RunContext) -> TokenizeResult:
    max_length = ctx.cfg.model.max_length
    tokenizer = load_tokenizer(ctx.cfg.model)
    splits = load_from_disk(str(ctx.require(ctx.layout.split / "dataset", "split")))
    full_lengths = []

    def encode(batch: dict) -> dict:
        full_lengths.extend(len(ids) for ids in tokenizer(batch["text"], truncation=False)["input_ids"])
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        return {**enc, "labels": batch["label"], "length": [len(ids) for ids in enc["input_ids"]]}

    tokenized = splits.map(
        encode, batched=True, remove_columns=splits["train"].column_names, load_from_cache_file=False
    )
    lengths = np.asarray(full_lengths)
    stats = {
        "mean": float(lengths.mean()),
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "max": float(lengths.max()),
        "truncated_pct": float(100.0 * (lengths > max_length).mean()),
    }
    with atomic_dir(ctx.layout.tokenized) as out:
        tokenized.save_to_disk(str(out / "dataset"))
        tokenizer.save_pretrained(str(out / "tokenizer"))
        write_json(out / "stats.json", stats)
    return TokenizeResult(length_stats=stats)

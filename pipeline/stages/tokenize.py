"""tokenize: split rows -> the task's model inputs, truncated to model.max_length; padding happens per batch later."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import read_json, write_json
from pipeline.context import RunContext
from pipeline.fingerprints import tokenize_key
from pipeline.models import load_tokenizer
from pipeline.results import StageResult


@dataclass
class TokenizeResult(StageResult):
    length_stats: dict[str, float]  # untruncated token lengths over all splits
    cache_hit: bool

    def metrics(self) -> dict[str, float]:
        return {**{f"tokens_{k}": v for k, v in self.length_stats.items()}, "cache_hit": float(self.cache_hit)}


def build(ctx: RunContext, out: Path) -> None:
    """Tokenize every split into `out/dataset`, with the tokenizer and length statistics beside it."""
    max_length = ctx.cfg.model.max_length
    tokenizer = ctx.task.prepare_tokenizer(load_tokenizer(ctx.cfg.model), ctx.cfg.task)
    splits = ctx.dataset("split")
    full_lengths = []

    def encode(batch: dict) -> dict:
        columns, untruncated = ctx.task.tokenize(batch, tokenizer, ctx.cfg)
        full_lengths.extend(untruncated)
        return columns

    tokenized = splits.map(
        encode, batched=True, remove_columns=splits["train"].column_names, load_from_cache_file=False
    )
    lengths = np.asarray(full_lengths)
    tokenized.save_to_disk(str(out / "dataset"))
    tokenizer.save_pretrained(str(out / "tokenizer"))
    write_json(
        out / "stats.json",
        {
            "mean": float(lengths.mean()),
            "p50": float(np.percentile(lengths, 50)),
            "p95": float(np.percentile(lengths, 95)),
            "max": float(lengths.max()),
            "truncated_pct": float(100.0 * (lengths > max_length).mean()),
        },
    )


def run(ctx: RunContext) -> TokenizeResult:
    ctx.require(ctx.layout.split / "dataset", "split")
    hit = ctx.cache.materialise("tokenize", tokenize_key(ctx.cfg), ctx.layout.tokenized, lambda out: build(ctx, out))
    return TokenizeResult(length_stats=read_json(ctx.layout.tokenized / "stats.json"), cache_hit=hit)

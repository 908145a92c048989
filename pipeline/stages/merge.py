"""merge: trained adapter -> one plain model (`merge_and_unload`), verified against the unmerged logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.atomic import atomic_dir
from pipeline.context import RunContext
from pipeline.errors import PipelineError
from pipeline.inference import exact_fp32
from pipeline.results import StageResult


@dataclass
class MergeResult(StageResult):
    max_abs_diff: float | None
    skipped_reason: str | None = None

    def metrics(self) -> dict[str, float]:
        return {} if self.max_abs_diff is None else {"max_abs_logit_diff": self.max_abs_diff}


def run(ctx: RunContext) -> MergeResult:
    if ctx.method.merge_skip_reason:
        ctx.tracker.tags({"merge.skipped": ctx.method.merge_skip_reason})
        return MergeResult(max_abs_diff=None, skipped_reason=ctx.method.merge_skip_reason)
    cfg = ctx.cfg.stage.merge
    test = ctx.dataset("tokenize")["test"]
    batch = test.select(range(min(cfg.n_samples, len(test))))
    model = ctx.trained_model(full_precision=True)  # QLoRA's adapter merges into the full-precision base
    with exact_fp32():
        before = ctx.task.parity_logits(model, batch, ctx)
        merged = ctx.method.merge(model)
        after = ctx.task.parity_logits(merged, batch, ctx)
    diff = float(np.abs(before - after).max())
    if diff > cfg.atol:
        raise PipelineError(f"stage.merge.atol: merged logits differ from unmerged by {diff:.3g} > {cfg.atol}")
    with atomic_dir(ctx.layout.merged_model) as out:
        merged.save_pretrained(str(out))
        ctx.tokenizer.save_pretrained(str(out))
    return MergeResult(max_abs_diff=diff)

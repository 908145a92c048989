"""evaluate: test split -> the task's metrics (classification: accuracy, macro P/R/F1, per-class report),
for the base and the trained model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from pipeline.atomic import atomic_dir, read_json, write_json
from pipeline.context import RunContext
from pipeline.fingerprints import base_model_key
from pipeline.metrics import scalar_metrics
from pipeline.results import StageResult


@dataclass
class EvaluateResult(StageResult):
    base: dict[str, Any]  # the pretrained model with an untrained head: the "before"
    trained: dict[str, Any] | None  # None when no train stage output exists
    cache_hit: bool  # whether the base model's scores came from the stage cache

    def metrics(self) -> dict[str, float]:
        out = {f"base_test_{k}": v for k, v in scalar_metrics(self.base).items()}
        if self.trained is not None:
            out.update({f"test_{k}": v for k, v in scalar_metrics(self.trained).items()})
        out["cache_hit"] = float(self.cache_hit)
        return out


def build_base(ctx: RunContext, test: Dataset, out: Path) -> None:
    """Base-model test outputs and metrics: independent of training, so cached across runs."""
    outputs = ctx.task.outputs(ctx.base_model(), test, ctx, ctx.cfg.stage.evaluate.batch_size)
    np.save(out / "test_logits.npy", outputs)
    write_json(out / "metrics.json", ctx.task.score(outputs, test, ctx))


def run(ctx: RunContext) -> EvaluateResult:
    test = ctx.dataset("tokenize")["test"]
    key = base_model_key(ctx.cfg, ctx.cfg.stage.evaluate)
    hit = ctx.cache.materialise("evaluate_base", key, ctx.layout.base_evaluate, lambda out: build_base(ctx, test, out))
    base = read_json(ctx.layout.base_evaluate / "metrics.json")
    trained, outputs = None, np.load(ctx.layout.base_evaluate / "test_logits.npy")
    if ctx.layout.model.exists():
        outputs = ctx.method.trained_outputs(ctx, "test", ctx.cfg.stage.evaluate.batch_size)
        trained = ctx.task.score(outputs, test, ctx)
    with atomic_dir(ctx.layout.evaluate) as out:
        np.save(out / "test_logits.npy", outputs)
        if trained is not None:  # per-row values, so comparisons can put intervals on the trained model's metrics
            np.savez(out / ctx.layout.test_rows.name, **ctx.task.row_values(outputs, test, ctx))
        write_json(out / "metrics.json", {"base": base, "trained": trained})
        reports = ctx.task.write_evaluation(base, trained, out)
    ctx.tracker.artifact(ctx.layout.evaluate / "metrics.json", "evaluate")
    for name in reports:
        ctx.tracker.artifact(ctx.layout.evaluate / name, "evaluate")
    return EvaluateResult(base=base, trained=trained, cache_hit=hit)

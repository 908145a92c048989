"""errors: test outputs -> the task's error analysis (classification: rows ranked by loss, most confident
mistakes, confusion matrix)."""

from __future__ import annotations

import numpy as np

from pipeline.atomic import atomic_dir
from pipeline.context import RunContext
from pipeline.results import StageResult


def run(ctx: RunContext) -> StageResult:
    outputs = np.load(ctx.require(ctx.layout.evaluate / "test_logits.npy", "evaluate"))
    test = ctx.dataset("split")["test"]  # the rows as drawn (texts and targets), in the outputs' order
    with atomic_dir(ctx.layout.errors) as out:
        result, shown = ctx.task.errors(outputs, test, ctx, out)
    for name in shown:
        ctx.tracker.artifact(ctx.layout.errors / name, "errors")
    return result

"""evaluate: test split -> accuracy, macro P/R/F1 and per-class report, for the base and the trained model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from datasets import load_from_disk

from pipeline.atomic import atomic_dir, write_json
from pipeline.context import RunContext
from pipeline.inference import predict_logits
from pipeline.metrics import classification_metrics, scalar_metrics


@dataclass
class EvaluateResult:
    base: dict[str, Any]  # the pretrained encoder with an untrained head: the "before"
    trained: dict[str, Any] | None  # None when no train stage output exists

    def metrics(self) -> dict[str, float]:
        out = {f"base_test_{k}": v for k, v in scalar_metrics(self.base).items()}
        if self.trained is not None:
            out.update({f"test_{k}": v for k, v in scalar_metrics(self.trained).items()})
        return out


def run(ctx: RunContext) -> EvaluateResult:
    test = load_from_disk(str(ctx.require(ctx.layout.tokenized / "dataset", "tokenize")))["test"]
    batch = ctx.cfg.stage.evaluate.batch_size
    references = np.asarray(test["labels"])
    base_logits = predict_logits(ctx.base_model(), test, ctx.tokenizer, batch)
    base = classification_metrics(base_logits.argmax(-1), references, ctx.labels)
    trained, logits = None, base_logits
    if ctx.layout.model.exists():
        logits = predict_logits(ctx.trained_model(), test, ctx.tokenizer, batch)
        trained = classification_metrics(logits.argmax(-1), references, ctx.labels)
    result = EvaluateResult(base=base, trained=trained)
    with atomic_dir(ctx.layout.evaluate) as out:
        np.save(out / "test_logits.npy", logits)
        write_json(out / "metrics.json", {"base": base, "trained": trained})
        per_class = pd.DataFrame(base["per_class"]).add_prefix("base_").rename(columns={"base_label": "label"})
        if trained is not None:
            per_class = per_class.merge(pd.DataFrame(trained["per_class"]), on="label")
        per_class.to_csv(out / "per_class.csv", index=False)
    ctx.tracker.artifact(ctx.layout.evaluate / "metrics.json", "evaluate")
    ctx.tracker.artifact(ctx.layout.evaluate / "per_class.csv", "evaluate")
    return result

"""evaluate: test split -> accuracy, macro P/R/F1 and per-class report, for the base and the trained model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, load_from_disk

from pipeline.atomic import atomic_dir, read_json, write_json
from pipeline.context import RunContext
from pipeline.fingerprints import base_model_key
from pipeline.inference import predict_logits
from pipeline.methods import Baseline
from pipeline.metrics import classification_metrics, scalar_metrics


@dataclass
class EvaluateResult:
    base: dict[str, Any]  # the pretrained encoder with an untrained head: the "before"
    trained: dict[str, Any] | None  # None when no train stage output exists
    cache_hit: bool  # whether the base model's scores came from the stage cache

    def metrics(self) -> dict[str, float]:
        out = {f"base_test_{k}": v for k, v in scalar_metrics(self.base).items()}
        if self.trained is not None:
            out.update({f"test_{k}": v for k, v in scalar_metrics(self.trained).items()})
        out["cache_hit"] = float(self.cache_hit)
        return out


def build_base(ctx: RunContext, test: Dataset, out: Path) -> None:
    """Base-model test logits and metrics: independent of training, so cached across runs."""
    logits = predict_logits(ctx.base_model(), test, ctx.tokenizer, ctx.cfg.stage.evaluate.batch_size)
    np.save(out / "test_logits.npy", logits)
    write_json(out / "metrics.json", classification_metrics(logits.argmax(-1), np.asarray(test["labels"]), ctx.labels))


def trained_logits(ctx: RunContext, test: Dataset) -> np.ndarray:
    """Test logits of the trained model; a baseline scores the raw texts (same rows, same order)."""
    if isinstance(ctx.method, Baseline):
        texts = load_from_disk(str(ctx.require(ctx.layout.split / "dataset", "split")))["test"]["text"]
        return ctx.method.logits(ctx.layout.model, texts)
    return predict_logits(ctx.trained_model(), test, ctx.tokenizer, ctx.cfg.stage.evaluate.batch_size)


def run(ctx: RunContext) -> EvaluateResult:
    test = load_from_disk(str(ctx.require(ctx.layout.tokenized / "dataset", "tokenize")))["test"]
    key = base_model_key(ctx.cfg, ctx.cfg.stage.evaluate)
    hit = ctx.cache.materialise("evaluate_base", key, ctx.layout.base_evaluate, lambda out: build_base(ctx, test, out))
    base = read_json(ctx.layout.base_evaluate / "metrics.json")
    trained, logits = None, np.load(ctx.layout.base_evaluate / "test_logits.npy")
    if ctx.layout.model.exists():
        logits = trained_logits(ctx, test)
        trained = classification_metrics(logits.argmax(-1), np.asarray(test["labels"]), ctx.labels)
    with atomic_dir(ctx.layout.evaluate) as out:
        np.save(out / "test_logits.npy", logits)
        write_json(out / "metrics.json", {"base": base, "trained": trained})
        per_class = pd.DataFrame(base["per_class"]).add_prefix("base_").rename(columns={"base_label": "label"})
        if trained is not None:
            per_class = per_class.merge(pd.DataFrame(trained["per_class"]), on="label")
        per_class.to_csv(out / "per_class.csv", index=False)
    ctx.tracker.artifact(ctx.layout.evaluate / "metrics.json", "evaluate")
    ctx.tracker.artifact(ctx.layout.evaluate / "per_class.csv", "evaluate")
    return EvaluateResult(base=base, trained=trained, cache_hit=hit)

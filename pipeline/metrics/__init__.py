"""Metrics through `evaluate`, from local metric modules so they load without the Hub."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import evaluate
import numpy as np

_CLASSIFICATION = Path(__file__).parent / "classification"
_GENERATION = Path(__file__).parent / "generation"


@cache
def _classification_metric() -> evaluate.EvaluationModule:
    return evaluate.load(str(_CLASSIFICATION))


def classification_metrics(
    predictions: np.ndarray, references: np.ndarray, label_names: list[str] | None = None
) -> dict[str, Any]:
    """accuracy, precision_macro, recall_macro, f1_macro (floats) and per_class (list of dicts)."""
    return _classification_metric().compute(
        predictions=[int(p) for p in predictions],
        references=[int(r) for r in references],
        label_names=label_names,
    )


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Only the float entries (what MLflow and the Trainer can log)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


@cache
def _generation_metric() -> evaluate.EvaluationModule:
    return evaluate.load(str(_GENERATION))


def generation_metrics(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """rouge1, rouge2, rougeL, exact_match (means) and per_row (each metric per row, for ranking)."""
    return _generation_metric().compute(predictions=list(predictions), references=list(references))

"""Both methods on a tiny DistilBERT: full fine-tuning skips merge yet exports; LoRA merges with its head."""

from __future__ import annotations

import json

import pytest

from pipeline.runner import run_pipeline
from tests.conftest import tiny_overrides


@pytest.mark.parametrize(("method", "lr"), [("full", "3e-3"), ("lora", "1e-2")])
def test_distilbert_trains_merges_and_exports(tmp_path, tiny_models, synthetic_csv, compose_config, method, lr):
    overrides = tiny_overrides(tiny_models["distilbert"], synthetic_csv, tmp_path, kind="distilbert")
    overrides += [
        f"method={method}",
        f"train.learning_rate={lr}",
        "stages=[split,tokenize,train,evaluate,merge,export]",
    ]
    results = run_pipeline(compose_config(overrides), tmp_path / "run")
    metrics = results["evaluate"].metrics()
    assert metrics["test_accuracy"] > 0.6 and metrics["test_accuracy"] > metrics["base_test_accuracy"]
    if method == "full":
        assert "no adapter" in results["merge"].skipped_reason
        assert not (tmp_path / "run" / "merge").exists()
    else:
        assert results["merge"].max_abs_diff < 1e-4
    fp32 = results["export"].variants["fp32"]
    assert fp32["max_abs_logit_diff"] < 1e-4
    assert fp32["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=0.03)

    # Any stage reruns alone on an existing run directory, with identical results, keeping the others' entries.
    rerun = run_pipeline(compose_config([*overrides, "stages=[evaluate]"]), tmp_path / "run")
    assert {**rerun["evaluate"].metrics(), "cache_hit": 0.0} == metrics
    assert rerun["evaluate"].cache_hit  # the base model's scores come from the stage cache the second time
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {"split", "train", "export", "evaluate"} <= set(summary["stages"])
    assert len(summary["mlflow_runs"]) == 2

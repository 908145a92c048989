"""Slow: the offline reference command on the genuine AG News CSV with the real MiniLM (`make test-slow`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.runner import run_pipeline

AG_NEWS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ag_news_csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (AG_NEWS / "test.csv").is_file(), reason="../shared/data/ag_news_csv not present"),
]


def test_offline_reference_experiment_on_a_subset(tmp_path, compose_config):
    cfg = compose_config(
        [
            "+experiment=agnews_lora",
            "model=minilm",
            "data=ag_news_csv",
            f"data.dir={AG_NEWS}",
            "data.max_samples=1200",
            "train.max_steps=60",
            "stage.explore.n_samples=120",
            f"paths.output_dir={tmp_path}",
        ]
    )
    results = run_pipeline(cfg, tmp_path / "run")
    assert results["split"].sizes == {"train": 960, "validation": 120, "test": 120}
    metrics = results["evaluate"].metrics()
    assert metrics["test_accuracy"] > 0.7 > metrics["base_test_accuracy"]
    assert results["merge"].max_abs_diff < 1e-4 and results["export"].variants["fp32"]["max_abs_logit_diff"] < 1e-4

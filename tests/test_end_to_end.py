"""All stages on a tiny BERT + LoRA: real outcomes, not just "it ran"."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipeline.inference import resolved_precision


def test_mlflow_run_finished_with_metrics_and_artifacts(lora_run):
    cfg, run_dir, _ = lora_run
    summary = json.loads((run_dir / "summary.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{Path(cfg.paths.output_dir).resolve() / 'mlflow.db'}")
    run = MlflowClient().get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    for key in [
        "split/train_size",
        "tokenize/tokens_mean",
        "train/params_trainable_method",
        "train/samples_per_s",
        "evaluate/test_accuracy",
        "evaluate/base_test_accuracy",
        "errors/n_errors",
        "merge/max_abs_logit_diff",
        "export/fp32_test_accuracy",
        "export/int8_test_accuracy",
        "explore/trained_silhouette",
    ]:
        assert key in run.data.metrics, key
    assert run.data.tags["method"] == "lora"
    assert run.data.tags["explore.precision"] == resolved_precision("auto", cpu_bf16=True)  # what `auto` became
    assert len(run.data.tags["git_commit"]) == 40
    assert run.data.params["method.r"] == "16"
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"config", "model", "evaluate", "errors", "explore", "split", "summary.json", "manifest.json"} <= artifacts
    assert run.data.tags["model_uri"].startswith("models:/")


def test_tiny_model_beats_chance_and_its_untrained_self(lora_run):
    _, _, results = lora_run
    metrics = results["evaluate"].metrics()
    assert metrics["test_accuracy"] > 0.6  # 3 balanced classes: chance is 1/3
    assert metrics["test_accuracy"] > metrics["base_test_accuracy"] + 0.15


def test_merge_and_onnx_parity_within_tolerance(lora_run):
    cfg, _, results = lora_run
    assert results["merge"].max_abs_diff <= cfg.stage.merge.atol
    fp32, int8 = results["export"].variants["fp32"], results["export"].variants["int8"]
    assert fp32["max_abs_logit_diff"] <= cfg.stage.export.atol
    assert fp32["test_accuracy"] == pytest.approx(results["evaluate"].metrics()["test_accuracy"], abs=0.02)
    assert int8["size_mb"] < fp32["size_mb"]


def test_run_directory_holds_every_stage_output(lora_run):
    _, run_dir, _ = lora_run
    for rel in [
        "split/dataset",
        "split/labels.json",
        "tokenize/dataset",
        "train/model/adapter_config.json",
        "explore/umap_hexbin.png",
        "evaluate/metrics.json",
        "errors/confident_mistakes.csv",
        "errors/confusion_matrix.png",
        "merge/model/config.json",
        "export/model.onnx",
        "export/tokenizer.json",
    ]:
        assert (run_dir / rel).exists(), rel
    assert not list(run_dir.rglob(".*.tmp-*")), "temporary directories left behind"

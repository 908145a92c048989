"""Per-stage outputs of the shared tiny LoRA run: tokenize, train, explore, evaluate, errors, merge, export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from datasets import load_from_disk

from pipeline.tasks.classification import rank_samples


def test_tokenize_truncates_and_does_not_pad_on_disk(lora_run):
    cfg, run_dir, results = lora_run
    train = load_from_disk(str(run_dir / "tokenize" / "dataset"))["train"]
    lengths = [len(ids) for ids in train["input_ids"]]
    assert max(lengths) <= cfg.model.max_length
    assert len(set(lengths)) > 1  # dynamic padding happens per batch, not on disk
    assert train["length"] == lengths
    assert results["tokenize"].length_stats["truncated_pct"] == 0.0


def test_train_reports_parameters_speed_and_best_checkpoint(lora_run):
    _, run_dir, results = lora_run
    train = results["train"]
    # tiny BERT, hidden 32, 2 layers, LoRA r=16 on query+value: 2 layers x 2 modules x 16 x (32 + 32)
    assert train.params.trainable_method == 4096
    assert train.params.trainable_head == 32 * 3 + 3  # classifier only; the pooler stays frozen
    assert train.best_metric is not None and train.best_step in (20, 40, 60, 80)
    assert train.metrics()["samples_per_s"] > 0
    history = json.loads((run_dir / "train" / "result.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert losses[-1] < losses[0]
    assert (run_dir / "train" / "checkpoints").is_dir()


def test_explore_embeds_base_and_trained_and_training_separates_classes(lora_run):
    _, run_dir, results = lora_run
    data = np.load(run_dir / "explore" / "embeddings.npz")
    assert data["base_umap"].shape == data["trained_umap"].shape == (24, 2)
    sil = results["explore"].silhouette
    assert sil["trained"] > sil["base"]


def test_evaluate_writes_per_class_report_for_base_and_trained(lora_run):
    _, run_dir, _ = lora_run
    per_class = pd.read_csv(run_dir / "evaluate" / "per_class.csv")
    assert per_class["label"].tolist() == ["alpha", "beta", "gamma"]
    assert {"base_f1", "f1", "support"} <= set(per_class.columns)
    assert per_class["support"].sum() == 36


def test_errors_rank_by_loss_and_list_confident_mistakes(lora_run):
    cfg, run_dir, results = lora_run
    ranked = pd.read_csv(run_dir / "errors" / "per_sample_loss.csv")
    assert ranked["loss"].is_monotonic_decreasing and len(ranked) == 36
    mistakes = pd.read_csv(run_dir / "errors" / "confident_mistakes.csv")
    assert (mistakes["label"] != mistakes["predicted"]).all()
    assert mistakes["confidence"].is_monotonic_decreasing
    assert len(mistakes) == min(results["errors"].n_errors, cfg.stage.errors.top_k)


def test_rank_samples_loss_is_cross_entropy():
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]], dtype=np.float32)
    ranked = rank_samples(["a", "b", "c"], np.array([1, 1, 0]), logits, ["x", "y"])
    assert ranked["text"].tolist() == ["a", "c", "b"]
    assert ranked.loc[0, "loss"] == np.log1p(np.exp(2.0))


def test_merged_model_and_onnx_export_are_self_contained(lora_run):
    _, run_dir, results = lora_run
    assert (run_dir / "merge" / "model" / "model.safetensors").is_file()
    assert not (run_dir / "merge" / "model" / "adapter_config.json").exists()
    export = json.loads((run_dir / "export" / "export.json").read_text())
    assert export["variants"] == results["export"].variants
    assert export["variants"]["fp32"]["max_abs_logit_diff"] < 1e-4
    assert json.loads((run_dir / "export" / "labels.json").read_text()) == ["alpha", "beta", "gamma"]
    assert (run_dir / "export" / "model.int8.onnx").is_file()
    assert (run_dir / "export" / "tokenizer_config.json").is_file()


def test_no_stage_writes_into_another_stages_datasets(lora_run):
    _, run_dir, _ = lora_run
    # datasets writes cache-*.arrow beside a memory-mapped dataset it shuffles or sorts; stages load them in memory.
    assert not list(run_dir.glob("*/dataset/**/cache-*.arrow"))

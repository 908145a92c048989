"""Runs the selected stages in order inside one tracked MLflow run and writes the run summary."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from omegaconf import DictConfig
from transformers import AutoConfig, AutoModelForSequenceClassification

from pipeline.atomic import read_json, write_json
from pipeline.cache import StageCache
from pipeline.config import CacheMode, Stage, value
from pipeline.context import RunContext, RunLayout
from pipeline.errors import PipelineError
from pipeline.manifest import build_manifest
from pipeline.methods import Method, get_method
from pipeline.models import resolve_model_path
from pipeline.stages import errors, evaluate, explore, export, merge, split, tokenize, train
from pipeline.tracking import tracked_run

STAGES = {
    Stage.split: split.run,
    Stage.tokenize: tokenize.run,
    Stage.train: train.run,
    Stage.explore: explore.run,
    Stage.evaluate: evaluate.run,
    Stage.errors: errors.run,
    Stage.merge: merge.run,
    Stage.export: export.run,
}


def preflight(cfg: DictConfig, method: Method) -> None:
    """Fail before any work on a model that cannot load, a method that cannot apply to it, or an unknown optimizer.

    The check builds the architecture on the meta device, so no weights are read.
    """
    path = resolve_model_path(cfg.model)
    if Stage.train not in {Stage(value(s)) for s in cfg.stages}:
        return
    train.optimizer_name(cfg.train.optim)
    try:
        config = AutoConfig.from_pretrained(path, revision=cfg.model.revision, num_labels=2)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"model.name_or_path: cannot load config of {path!r} ({type(exc).__name__})") from exc
    with torch.device("meta"):
        skeleton = AutoModelForSequenceClassification.from_config(config)
    method.check_applicable(skeleton, cfg.method, cfg.model)


def quiet_libraries() -> None:
    """Keep the console readable: no per-map progress bars, load reports or ONNX optimiser chatter."""
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    for name in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_pipeline(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run `cfg.stages` (always in pipeline order) and return each stage's result by name."""
    quiet_libraries()
    method = get_method(cfg.method.name)
    selected = [stage for stage in Stage if stage in {Stage(value(s)) for s in cfg.stages}]
    results: dict[str, Any] = {}
    summary_path = run_dir / "summary.json"
    # A rerun of some stages in an existing run directory updates their entries and keeps the others.
    summary: dict[str, Any] = read_json(summary_path) if summary_path.exists() else {"stages": {}}
    with tracked_run(cfg, run_dir, overrides or []) as tracker:
        manifest = build_manifest(cfg, overrides or [])
        manifest_path = run_dir / "manifest.json"
        write_json(manifest_path, manifest)
        tracker.tags({"git_commit": manifest["git"]["commit"], "git_dirty": manifest["git"]["dirty"]})
        tracker.artifact(manifest_path)
        preflight(cfg, method)
        cache = StageCache(Path(cfg.paths.cache_dir).expanduser(), CacheMode(value(cfg.cache)))
        ctx = RunContext(cfg=cfg, layout=RunLayout(run_dir), method=method, tracker=tracker, cache=cache)
        for stage in selected:
            start = time.perf_counter()
            result = STAGES[stage](ctx)
            metrics = {**result.metrics(), "wall_s": time.perf_counter() - start}
            tracker.metrics(f"{stage.value}/", metrics)
            results[stage.value] = result
            summary["stages"][stage.value] = metrics
            skipped = getattr(result, "skipped_reason", None)
            if skipped:
                summary.setdefault("skipped", {})[stage.value] = skipped
            if stage == Stage.split:  # the exact rows of each split, for comparing runs
                manifest["splits_index_sha256"] = result.index_sha256
            elif stage == Stage.train:  # peak CUDA memory (or peak RSS on CPU) and what training ran on
                manifest["train_peak_memory_mb"] = result.peak_memory_mb
                manifest["train_runtime"] = result.runtime
            else:
                continue
            write_json(manifest_path, manifest)
            tracker.artifact(manifest_path)
        summary["method"] = cfg.method.name
        summary["mlflow_run_id"] = tracker.run_id
        summary["mlflow_runs"] = [*summary.get("mlflow_runs", []), tracker.run_id]
        write_json(summary_path, summary)
        tracker.artifact(summary_path)
    return results

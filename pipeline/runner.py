"""Runs the selected stages in order inside one tracked MLflow run and writes the run summary."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from pipeline.atomic import read_json, remove_leftovers, writable_dir, write_json
from pipeline.cache import StageCache
from pipeline.config import CacheMode, Stage, value
from pipeline.console import before_after, quiet_libraries, stage_line, ui_link
from pipeline.context import RunContext, RunLayout
from pipeline.hub import check_hub
from pipeline.manifest import build_manifest, note_code_at_start
from pipeline.methods import BaseMethod, get_method
from pipeline.models import resolve_model_path
from pipeline.preflight import Check, preflight
from pipeline.ranges import check_ranges
from pipeline.results import StageResult
from pipeline.rundir import check_resumable, holding
from pipeline.tasks import Task, get_task

if TYPE_CHECKING:
    from pipeline.tracking import Tracker

log = logging.getLogger("pipeline")


def _stage_function(stage: Stage, name: str) -> Callable[..., Any]:
    """`pipeline.stages.<stage>.<name>`, imported on first call: each stage brings its own heavy libraries
    (evaluate, UMAP, onnxruntime), so a run pays only for the stages it runs, and start-up for none of them."""

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(f"pipeline.stages.{stage.value}"), name)(*args)

    return call


def _check_explore(cfg: DictConfig, task: Task, _method: BaseMethod) -> None:
    """explore's pre-flight check, kept out of its module: importing that loads matplotlib and scikit-learn."""
    task.check_pooling(value(cfg.stage.explore.pooling))


STAGES: dict[Stage, Callable[[RunContext], StageResult]] = {stage: _stage_function(stage, "run") for stage in Stage}
# Checks a stage runs before any stage does work: a bad setting fails in seconds, not after the split.
CHECKS: dict[Stage, Callable[[DictConfig, Task, BaseMethod], None]] = {
    Stage.train: _stage_function(Stage.train, "check"),
    Stage.explore: _check_explore,
}


def stage_checks(cfg: DictConfig, task: Task, method: BaseMethod, stages: list[Stage]) -> list[Check]:
    """The selected stages' pre-flight checks, bound to this run's config, task and method."""
    return [partial(CHECKS[stage], cfg, task, method) for stage in stages if stage in CHECKS]


def run_pipeline(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> dict[str, StageResult]:
    """Run `cfg.stages` (always in pipeline order) and return each stage's result by name."""
    quiet_libraries()
    note_code_at_start()  # before a model fetch, which can take minutes
    check_ranges(cfg)  # a value out of its field's range fails before anything is written
    task = get_task(cfg.task.name)
    check_hub(cfg, overrides or [], task.offline_model)  # offline, a Hub model or dataset fails here in seconds
    method = get_method(cfg.method.name)
    # Unusable directories fail here, not after a stage's work is done (the cache may sit inside the outputs).
    writable_dir(Path(cfg.paths.output_dir), "paths.output_dir")
    cache_mode = CacheMode(value(cfg.cache))
    if cache_mode != CacheMode.off:
        writable_dir(Path(cfg.paths.cache_dir), "paths.cache_dir")
    # A missing model package or directory fails before anything runs. A model fetched or converted on first use is
    # made here, before the pre-flight check forks: the check then finds it made rather than making it a second time.
    resolve_model_path(cfg.model)
    selected = [stage for stage in Stage if stage in {Stage(value(s)) for s in cfg.stages}]
    results: dict[str, StageResult] = {}
    summary_path = run_dir / "summary.json"
    # The checks run beside the MLflow start-up (a forked process, where that pays) and are awaited before stage 1.
    with (
        preflight(stage_checks(cfg, task, method, selected)) as verdict,
        run_session(cfg, run_dir, overrides or []) as tracker,
    ):
        # A rerun of some stages in an existing run directory updates their entries and keeps the others.
        summary: dict[str, Any] = read_json(summary_path) if summary_path.exists() else {"stages": {}}
        manifest = build_manifest(cfg, overrides or [])
        manifest_path = run_dir / "manifest.json"
        write_json(manifest_path, manifest)
        tracker.tags({"git_commit": manifest["git"]["commit"], "git_dirty": manifest["git"]["dirty"]})
        tracker.artifact(manifest_path)
        cache = StageCache(Path(cfg.paths.cache_dir).expanduser(), cache_mode)
        ctx = RunContext(cfg=cfg, layout=RunLayout(run_dir), task=task, method=method, tracker=tracker, cache=cache)
        verdict()
        for i, stage in enumerate(selected, start=1):
            log.info("[%d/%d] %s ...", i, len(selected), stage.value)
            start = time.perf_counter()
            result = STAGES[stage](ctx)
            metrics = {**result.metrics(), "wall_s": time.perf_counter() - start}
            log.info("[%d/%d] %s", i, len(selected), stage_line(stage.value, metrics, result.skipped_reason))
            tracker.metrics(f"{stage.value}/", metrics)
            results[stage.value] = result
            summary["stages"][stage.value] = metrics
            if result.skipped_reason:
                summary.setdefault("skipped", {})[stage.value] = result.skipped_reason
            entries = result.manifest()
            if entries:
                manifest.update(entries)
                write_json(manifest_path, manifest)
                tracker.artifact(manifest_path)
        tracker.metrics("", headline_metrics(summary["stages"], task))
        summary["task"] = task.name
        summary["method"] = cfg.method.name
        summary["mlflow_run_id"] = tracker.run_id
        summary["mlflow_runs"] = [*summary.get("mlflow_runs", []), tracker.run_id]
        write_json(summary_path, summary)
        tracker.artifact(summary_path)
    log_summary(summary, task.comparison_metrics[:2], run_dir, tracker)
    return results


# (stage, metric in its summary entry, plain name): the few a comparison reads, beside the ~60 `<stage>/*` ones
HEADLINE_METRICS = [
    ("train", "best_val_metric", "best_val_metric"),
    ("train", "params_trainable_pct", "trainable_pct"),
    ("train", "samples_per_s", "samples_per_s"),
    ("train", "peak_memory_mb", "peak_memory_mb"),
    ("train", "saved_mb", "saved_mb"),  # what the method saves: the adapter, or the whole model for full/bitfit
]


def headline_metrics(stages: dict[str, dict[str, float]], task: Task) -> dict[str, float]:
    """The few figures a comparison reads, under plain names: the task's test metrics, validation, cost."""
    spec = [("evaluate", f"test_{m}", f"test_{m}") for m in task.comparison_metrics[:2]] + HEADLINE_METRICS
    return {name: stages[stage][metric] for stage, metric, name in spec if metric in stages.get(stage, {})}


@contextmanager
def run_session(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Iterator[Tracker]:
    """The run directory held by this run alone, checked before a resume, and the run tracked in MLflow."""
    from pipeline.tracking import tracked_run  # MLflow loads here, after the pre-flight checks have forked

    with holding(run_dir):
        # A killed earlier run's half-written outputs, never trusted; a cache inside the run dir is not ours.
        leftovers = remove_leftovers(run_dir, skip=(Path(cfg.paths.cache_dir).expanduser(),))
        for line in leftovers:
            log.warning("run directory: %s (left by an interrupted write)", line)
        if cfg.resume:
            check_resumable(cfg, run_dir)
        with tracked_run(cfg, run_dir, overrides) as tracker:
            yield tracker


def log_summary(summary: dict[str, Any], metrics: tuple[str, ...], run_dir: Path, tracker: Tracker) -> None:
    """The run's last lines: the task's headline test metrics before -> after training, and where to look."""
    scores = [before_after(summary["stages"].get("evaluate", {}), metric) for metric in metrics]
    if any(scores):
        log.info("result: %s", "; ".join(s for s in scores if s))
    log.info("run directory: %s", run_dir)
    plots = sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("*/*.png"))
    if plots:
        log.info("plots: %s", ", ".join(plots))
    log.info("MLflow run %s: %s", tracker.run_id, ui_link(tracker.tracking_uri, tracker.experiment_id, tracker.run_id))

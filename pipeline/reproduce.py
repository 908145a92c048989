"""Rerun a past run from its MLflow run id, re-composing the config it logged.

python -m pipeline.reproduce RUN_ID                  # a fresh run directory, same config
python -m pipeline.reproduce RUN_ID --resume         # continue that run's directory from its last checkpoint
python -m pipeline.reproduce RUN_ID train.max_steps=10   # with dotted overrides on top
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

import pipeline
from pipeline.config import Config, PathsConfig
from pipeline.errors import PipelineError
from pipeline.methods import get_method
from pipeline.process import skip_exit_collection
from pipeline.runner import run_pipeline
from pipeline.tasks import DEFAULT_TASK, get_task
from pipeline.tracking import existing_store


def logged_config(run_id: str, overrides: list[str]) -> DictConfig:
    """The run's composed config, typed again by the schema (and its method's), with overrides applied."""
    client = MlflowClient()
    try:
        tags = client.get_run(run_id).data.tags
        with tempfile.TemporaryDirectory() as tmp:
            raw = OmegaConf.load(client.download_artifacts(run_id, "config/config.yaml", tmp))
    except (MlflowException, OSError) as exc:
        raise PipelineError(f"run_id: no run {run_id!r} with a logged config in {mlflow.get_tracking_uri()}") from exc
    # explore embeds as the run did: what its `auto` became there, or fp32 for runs from before the setting
    precision = OmegaConf.select(raw, "stage.explore.precision", default=None)
    if precision in (None, "auto"):
        pinned = tags.get("explore.precision", "fp32" if precision is None else "auto")
        OmegaConf.update(raw, "stage.explore.precision", pinned, force_add=True)
    raw = OmegaConf.merge(raw, OmegaConf.from_dotlist(overrides))
    logged_task = raw.get("task") or {"name": DEFAULT_TASK}  # runs logged before tasks were a choice
    task = OmegaConf.merge(OmegaConf.structured(get_task(logged_task["name"]).config_cls), logged_task)
    method = OmegaConf.merge(OmegaConf.structured(get_method(raw.method.name).config_cls), raw.method)
    cfg = OmegaConf.merge(OmegaConf.structured(Config), {k: v for k, v in raw.items() if k not in ("task", "method")})
    cfg.task, cfg.method = task, method
    return cfg


def reproduce(run_id: str, overrides: list[str], resume: bool, tracking_uri: str | None) -> Path:
    """Rerun `run_id`; returns the run directory used."""
    field = "MLFLOW_TRACKING_URI" if tracking_uri is None and pipeline.LAUNCH_TRACKING_URI else "--tracking-uri"
    mlflow.set_tracking_uri(existing_store(tracking_uri, PathsConfig.output_dir, field))
    cfg = logged_config(run_id, overrides)
    if resume:
        run_dir = Path(MlflowClient().get_run(run_id).data.tags.get("run_dir", ""))
        if not run_dir.is_dir():
            raise PipelineError(f"--resume: run directory {str(run_dir)!r} of run {run_id} no longer exists")
        cfg.resume = True
    else:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        run_dir = Path(cfg.paths.output_dir) / "runs" / cfg.tracking.experiment / f"{cfg.method.name}_{stamp}_reproduce"
    run_dir.mkdir(parents=True, exist_ok=True)
    run_pipeline(cfg, run_dir.resolve(), [f"reproduce={run_id}", *(["resume=true"] if resume else []), *overrides])
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides applied on top of the logged config")
    parser.add_argument("--resume", action="store_true", help="continue the run's own directory from its checkpoint")
    parser.add_argument("--tracking-uri", help="MLflow store holding the run (default: sqlite under outputs/)")
    args = parser.parse_args(argv)
    try:
        run_dir = reproduce(args.run_id, args.overrides, args.resume, args.tracking_uri)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"reproduced {args.run_id} in {run_dir}")
    return 0


if __name__ == "__main__":
    skip_exit_collection()
    sys.exit(main())

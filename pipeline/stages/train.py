"""train: the run's splits + method -> trained model (adapter, full weights or a baseline), with its accounting.

The method trains (transformer methods through the Trainer, pipeline/finetune.py; a baseline on the raw texts);
this stage checks what can be checked before any work, and records what training produced.
"""

from __future__ import annotations

import re
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.atomic import write_json
from pipeline.context import RunContext
from pipeline.errors import PipelineError
from pipeline.models import ParameterCounts
from pipeline.results import StageResult

if TYPE_CHECKING:
    from pipeline.methods import BaseMethod
    from pipeline.tasks import Task


@dataclass
class TrainResult(StageResult):
    params: ParameterCounts
    wall_s: float
    train_samples: int
    eval_s: float  # time spent in periodic validation, included in wall_s
    best_metric: float | None
    best_step: int | None
    peak_memory_mb: float
    saved_mb: float  # what the method saved (adapter, trained tensors or whole model), tokenizer excluded
    steps: int  # optimizer steps taken (0 for a baseline)
    runtime: dict[str, Any]  # what training ran on (device, GPU, precision, optimizer), for the manifest
    log_history: list[dict[str, Any]] | None = field(default=None, repr=False)  # the Trainer's, when it ran
    train_tokens: float | None = None  # tokens (padding excluded) in the batches trained, where tokens are fed

    def metrics(self) -> dict[str, float]:
        out = self.params.as_metrics()
        out.update(
            wall_s=self.wall_s,
            samples_per_s=self.train_samples / max(self.wall_s - self.eval_s, 1e-9),
            eval_share_pct=100.0 * self.eval_s / max(self.wall_s, 1e-9),
            peak_memory_mb=self.peak_memory_mb,
            saved_mb=self.saved_mb,
            steps=float(self.steps),
        )
        if self.best_metric is not None:
            out["best_val_metric"] = self.best_metric
        if self.train_tokens is not None:
            out["tokens_per_s"] = self.train_tokens / max(self.wall_s - self.eval_s, 1e-9)
        return out

    def manifest(self) -> dict[str, Any]:
        # peak CUDA memory (or peak RSS on CPU) and what training ran on
        return {"train_peak_memory_mb": self.peak_memory_mb, "train_runtime": self.runtime}

    def record(self) -> dict[str, Any]:
        """train/result.json: the metrics, plus the best step and the step log where the Trainer ran."""
        if self.log_history is None:
            return self.metrics()
        return {**self.metrics(), "best_step": self.best_step, "log_history": self.log_history}


def result_from_record(record: dict[str, Any]) -> TrainResult:
    """A TrainResult back from `dataclasses.asdict` (a DDP worker's, read from its outcome file)."""
    return TrainResult(**{**record, "params": ParameterCounts(**record["params"])})


def reset_peak_memory() -> None:
    """Count peak_memory_mb from now on: a sweep's trials share one process, and an earlier trial's peak is not
    this training's."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:  # Linux: "5" resets the process's peak RSS (VmHWM) to its current RSS, CUDA's reset for host memory
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the peak counts from the process's start


def peak_memory_mb() -> float:
    """Peak CUDA memory allocated if on GPU, else the process's peak RSS (since reset_peak_memory on Linux)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def check(cfg: Any, task: Task, method: BaseMethod) -> None:
    """Before any work: a known optimizer and validation metric, a max_length the model can embed, and a method
    that applies to the task and model.

    The method check builds the architecture on the meta device, so no weights are read. It needs no run context:
    the runner may run it in another process while the run starts (pipeline.preflight).
    """
    optimizer_name(cfg.train.optim)
    scheduler_name(cfg.train.lr_scheduler)
    distributed_settings(cfg.train, method)
    metric = cfg.train.metric_for_best_model
    known = [*task.validation_metrics, "loss"]
    if metric is not None and metric not in known:
        raise PipelineError(
            f"train.metric_for_best_model: {metric!r} is not a validation metric of task {task.name}; "
            f"expected one of {known}"
        )
    method.check_task(task)
    skeleton = task.skeleton(cfg.model)
    limit = getattr(skeleton.config, "max_position_embeddings", None)  # absent where positions are relative (T5)
    if limit is not None and cfg.model.max_length > limit:
        raise PipelineError(
            f"model.max_length: {cfg.model.max_length} is above the model's position limit; "
            f"expected at most {limit} (max_position_embeddings of {cfg.model.name_or_path})"
        )
    method.check_applicable(skeleton, cfg.method, cfg.model)


def distributed_settings(t: Any, method: BaseMethod) -> None:
    """train.nproc_per_node > 1: a Trainer method, a batch that splits evenly, and a GPU per process on CUDA."""
    if t.nproc_per_node == 1:
        return
    if not method.multi_process:
        raise PipelineError(
            f"train.nproc_per_node: {method.name} does not train with the Trainer, so it runs in one process; "
            "expected 1"
        )
    if t.batch_size % t.nproc_per_node:
        raise PipelineError(
            f"train.batch_size: {t.batch_size} does not split evenly across train.nproc_per_node={t.nproc_per_node} "
            f"processes; expected a multiple of {t.nproc_per_node}"
        )
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() < t.nproc_per_node:
        raise PipelineError(
            f"train.nproc_per_node: {t.nproc_per_node} processes, but {torch.cuda.device_count()} GPUs are visible; "
            "expected at most one process per GPU"
        )


def optimizer_name(name: str) -> str:
    """Check `train.optim` against transformers' optimizer names before any work starts."""
    from transformers.training_args import OptimizerNames

    if name not in {o.value for o in OptimizerNames}:
        raise PipelineError(
            f"train.optim: {name!r} is not a transformers optimizer; expected an OptimizerNames value such as "
            "adamw_torch_fused, adamw_torch, adafactor or sgd"
        )
    return name


def scheduler_name(name: str) -> str:
    """Check `train.lr_scheduler` before any work: a transformers scheduler that builds from the warmup and total
    steps alone (the config passes no scheduler arguments; cosine_with_min_lr, for one, needs min_lr)."""
    import torch
    from transformers import SchedulerType, get_scheduler

    known = [s.value for s in SchedulerType]
    if name not in known:
        raise PipelineError(f"train.lr_scheduler: {name!r} is not a transformers scheduler; expected one of {known}")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # a stand-in: only the build is tried
    try:
        get_scheduler(name, optimizer=optimizer, num_warmup_steps=1, num_training_steps=10)
    except (ValueError, TypeError) as exc:
        raise PipelineError(
            f"train.lr_scheduler: {name!r} needs arguments this config does not pass ({exc}); use one such as "
            "linear, cosine or constant_with_warmup"
        ) from exc
    return name


def run(ctx: RunContext) -> TrainResult:
    result = ctx.method.train(ctx)
    write_json(ctx.layout.train / "result.json", result.record())
    ctx.tracker.artifact(ctx.layout.model, "model")
    return result

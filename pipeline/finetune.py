"""Fine-tuning with the transformers Trainer, shared by every transformer method: the train stage's main path.

The Trainer does the loop; this module adds what it lacks here: a length-grouped sampler that resumes to the same
batch order, step logs streamed to MLflow, a validation budget, Optuna pruning, and the best checkpoint saved
through the method. The task gives the collator and the validation metrics.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from datasets import Dataset
from torch.utils.data import Sampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from pipeline.atomic import atomic_dir
from pipeline.config import value
from pipeline.console import format_logs
from pipeline.context import RunContext
from pipeline.distributed import rank, shared, world_size
from pipeline.inference import resolved_precision
from pipeline.methods import Method
from pipeline.models import count_parameters
from pipeline.stages.train import TrainResult, dir_size_mb, optimizer_name, peak_memory_mb, reset_peak_memory
from pipeline.sweep import open_trial
from pipeline.tracking import Tracker

log = logging.getLogger("pipeline")

EVAL_MIN_ROWS = 200  # fewer validation rows make checkpoint selection too noisy


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped batches whose order is drawn from `seed + epoch`.

    Written here because transformers' LengthGroupedSampler draws from the global RNG, whose state after
    a resume differs from an uninterrupted run, so a resumed run would see other batches.
    """

    def __init__(self, batch_size: int, dataset: Dataset, lengths: list[int] | None, seed: int) -> None:
        super().__init__(batch_size, dataset=dataset, lengths=lengths, model_input_name="input_ids")
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The latest checkpoint that was written to the end; incomplete ones are removed, with a warning.

    The Trainer writes `trainer_state.json` last, after the weights, optimizer, scheduler and RNG states, and
    not atomically: a checkpoint whose state file is missing or does not parse was interrupted mid-write (SIGTERM
    or SIGKILL), and resuming from it fails. The Trainer's own pick (`resume_from_checkpoint=True`) takes the
    highest step regardless, so the choice is made here.
    """
    steps = {int(p.name.split("-", 1)[1]): p for p in checkpoints.glob("checkpoint-*") if p.name[11:].isdigit()}
    found = [steps[step] for step in sorted(steps, reverse=True)]
    for path in found:
        try:
            json.loads((path / "trainer_state.json").read_text())["global_step"]
        except (OSError, ValueError, KeyError):
            log.warning(
                "train: %s was interrupted while being written: removed; resuming from an earlier one", path.name
            )
            shutil.rmtree(path)
            continue
        return path
    return None


class ConsoleProgress(ProgressCallback):
    """The Trainer's progress bar, with its log dicts written as formatted lines above it."""

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # The validation bar sits under the training bar, and tqdm clears it on close by moving the cursor up
        # (ESC[A): in a log file or a CI console (stderr not a terminal) those codes land before the next line.
        if sys.stderr.isatty():
            super().on_prediction_step(args, state, control, **kwargs)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(format_logs(logs, state.global_step, state.max_steps))

    def close_bars(self) -> None:
        """Close whatever bar is still open (training stopped before on_train_end: pruned, failed)."""
        for bar in (self.training_bar, self.prediction_bar):
            if bar is not None:
                bar.close()
        self.training_bar = self.prediction_bar = None


class PipelineTrainer(Trainer):
    """The Trainer, with a length-grouped sampler that resumes to the same batch order, and validation metrics
    computed from the model itself (generation) where the task has them."""

    def __init__(self, *args: Any, model_scorer: Callable[[Any], dict[str, float]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.model_scorer = model_scorer
        self.remove_callback(ProgressCallback)
        self.add_callback(ConsoleProgress)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)
        finally:
            # A pruned or failed trial stops inside a callback, before on_train_end closes the bar. Left open, the
            # next trial's bar in this process nests under it, and tqdm's cursor-up codes (ESC[A) fill sweep logs.
            for callback in self.callback_handler.callbacks:
                if isinstance(callback, ConsoleProgress):
                    callback.close_bars()

    def evaluation_loop(self, *args: Any, metric_key_prefix: str = "eval", **kwargs: Any) -> Any:
        # Added here, before the Trainer logs the metrics, picks the best checkpoint and calls on_evaluate (pruning).
        output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
        if self.model_scorer is not None:
            output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in self.model_scorer(self.model).items()})
        return output

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, Dataset):
            return super()._get_train_sampler(train_dataset)
        # The Trainer strips unused columns before this call; the tokenize stage's lengths are on the original.
        original = self.train_dataset
        has_lengths = isinstance(original, Dataset) and "length" in original.column_names
        lengths = original["length"] if has_lengths and len(original) == len(dataset) else None
        # The global batch: under DDP the same index order as one process, each rank taking its share of a step.
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return SeededLengthGroupedSampler(batch, dataset, lengths, seed=self.args.data_seed)


class MlflowStepLogger(TrainerCallback):
    """Streams the Trainer's step logs (loss, lr, eval_*) to MLflow as `train/<key>` at each global step."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        numeric = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if numeric:
            self.tracker.metrics("train/", numeric, step=state.global_step)


class PruningCallback(TrainerCallback):
    """Reports the validation metric to the trial at each evaluation; raises TrialPruned when told to stop.

    The last evaluation is reported but never pruned: the trial has spent its whole budget by then, so stopping
    saves nothing, and a PRUNED state would drop a finished run from the best-trial choice. Under DDP only rank 0
    holds the trial (`trial` None elsewhere); its verdict stops every rank.
    """

    def __init__(self, trial: optuna.Trial | None, metric: str) -> None:
        self.trial, self.key = trial, f"eval_{metric}"

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        if not metrics or self.key not in metrics:
            return

        def verdict() -> bool:
            self.trial.report(float(metrics[self.key]), step=state.global_step)
            return state.global_step < state.max_steps and self.trial.should_prune()

        if shared(verdict):
            raise optuna.TrialPruned(f"pruned at step {state.global_step} ({self.key}={metrics[self.key]:.4f})")


def precision_flags(precision: str) -> dict[str, bool]:
    """bf16 where the GPU supports it (auto), plain fp32 on CPU; TF32 matmuls on CUDA."""
    precision = resolved_precision(precision)
    return {"bf16": precision == "bf16", "fp16": precision == "fp16", "tf32": torch.cuda.is_available()}


def ddp_flags() -> dict[str, Any]:
    """Under torchrun: DDP without the search for unused parameters (every method's trainable parameters take
    part in each forward, so it would only cost a graph traversal per step and print a warning saying so); on
    CPU over gloo, as the Trainer otherwise leaves CPU processes unsynchronised (accelerate sets DDP up on CPU only
    when told to use the CPU), each training alone on the same rows. On GPUs the Trainer picks NCCL itself."""
    if world_size() == 1:
        return {}
    flags: dict[str, Any] = {"ddp_find_unused_parameters": False}
    if not torch.cuda.is_available():
        flags.update(use_cpu=True, ddp_backend="gloo")
    return flags


def runtime_info(args: TrainingArguments) -> dict[str, Any]:
    """What the Trainer actually ran with: device, GPU, resolved precision, TF32, optimizer, pinned memory."""
    cuda = args.device.type == "cuda"
    info: dict[str, Any] = {
        "device": args.device.type,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "tf32": bool(args.tf32),
        "optim": value(args.optim),
        "pin_memory": args.dataloader_pin_memory,
    }
    if cuda:
        info["gpu"] = torch.cuda.get_device_name(args.device)
    return info


def validation_rows(t: Any, n_train: int, n_validation: int) -> int:
    """Rows per periodic validation: all periodic validations together see at most `eval_budget` x the rows
    trained (at least EVAL_MIN_ROWS each, at most eval_max_samples), keeping their cost near a tenth of training.
    """
    steps_per_epoch = math.ceil(n_train / (t.batch_size * t.gradient_accumulation_steps))
    total_steps = t.max_steps if t.max_steps > 0 else math.ceil(t.epochs * steps_per_epoch)
    every = math.ceil(t.eval_steps * total_steps) if t.eval_steps < 1 else int(t.eval_steps)
    n_evals = max(1, total_steps // max(every, 1))
    rows_trained = total_steps * t.batch_size * t.gradient_accumulation_steps
    budget = max(EVAL_MIN_ROWS, int(t.eval_budget * rows_trained / n_evals))
    return min(n_validation, budget, t.eval_max_samples or n_validation)


def best_metric(ctx: RunContext) -> str:
    """train.metric_for_best_model, or the task's selection metric when unset."""
    return ctx.cfg.train.metric_for_best_model or ctx.task.selection_metric


def training_arguments(ctx: RunContext, method: Method) -> TrainingArguments:
    t = ctx.cfg.train
    return TrainingArguments(
        output_dir=str(ctx.layout.checkpoints),
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size // world_size(),  # train.check: it splits evenly
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.eval_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=method.trainer_loads_best,
        metric_for_best_model=best_metric(ctx),
        greater_is_better=best_metric(ctx) != "loss",
        logging_steps=t.logging_steps,
        train_sampling_strategy=value(t.sampling),
        optim=optimizer_name(t.optim),
        dataloader_pin_memory=t.pin_memory and torch.cuda.is_available(),  # pinning needs a GPU to copy to
        dataloader_num_workers=t.dataloader_num_workers,
        seed=ctx.cfg.seed,
        data_seed=ctx.cfg.seed,
        full_determinism=t.deterministic,
        report_to="none",
        # True would also scale a per-row mean loss by the number of ranks, doubling classification's gradients
        average_tokens_across_devices=ctx.task.token_level_loss,
        **ddp_flags(),
        disable_tqdm=False,  # PipelineTrainer swaps the bar's raw log dicts for formatted lines
        **precision_flags(value(t.precision)),
    )


def trial_callbacks(ctx: RunContext) -> list[TrainerCallback]:
    """In an Optuna sweep: report each validation to the trial and stop when the pruner says so."""
    if ctx.cfg.trial.study is None:
        return []
    trial = open_trial(ctx.cfg.trial, Path(ctx.cfg.paths.output_dir)) if rank() == 0 else None
    return [PruningCallback(trial, best_metric(ctx))]


def fine_tune(ctx: RunContext, method: Method) -> TrainResult:
    """Train `method` on the tokenized splits with the Trainer; save the best checkpoint to the run's model dir."""
    cfg = ctx.cfg
    data = ctx.dataset("tokenize")
    tokenizer = ctx.tokenizer
    model = ctx.method_base_model()
    method.check_applicable(model, cfg.method, cfg.model)
    model = method.wrap(model, cfg.method, cfg.model)
    params = count_parameters(model)
    n_eval = validation_rows(cfg.train, len(data["train"]), len(data["validation"]))
    validation = data["validation"].shuffle(seed=cfg.seed).select(range(n_eval))
    validation = validation.sort("length")  # similar lengths per eval batch: less padding, cheaper validation
    trainer = PipelineTrainer(
        model=model,
        args=training_arguments(ctx, method),
        train_dataset=data["train"],
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=ctx.task.collator(tokenizer, value(cfg.train.padding), cfg.model.max_length),
        compute_metrics=ctx.task.trainer_metrics(ctx),
        model_scorer=ctx.task.validation_scorer(ctx, validation),
        callbacks=[MlflowStepLogger(ctx.tracker), *method.callbacks(model, cfg.method), *trial_callbacks(ctx)],
    )
    # One rank looks (it may remove an interrupted checkpoint), and every rank resumes from what it found.
    checkpoint = shared(lambda: last_complete_checkpoint(ctx.layout.checkpoints)) if cfg.resume else None
    resume_from = checkpoint is not None  # the Trainer restores weights, optimizer, scheduler and RNGs
    ctx.tracker.tags({"resumed_from_checkpoint": resume_from})
    reset_peak_memory()  # peak memory of this training alone, not of earlier stages or trials in the process
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    wall = time.perf_counter() - start
    state = trainer.state
    eval_s = sum(entry.get("eval_runtime", 0.0) for entry in state.log_history)
    best_step = int(state.best_global_step) if getattr(state, "best_global_step", None) else None
    saved = 0.0
    if rank() == 0:  # under DDP, rank 0 alone writes the stage's outputs (the Trainer does so for checkpoints)
        trained = trainer.model
        if not method.trainer_loads_best and state.best_model_checkpoint:
            trained = method.load(ctx.method_base_model(), Path(state.best_model_checkpoint))
        with atomic_dir(ctx.layout.model) as out:
            method.save(trained, out)
            saved = dir_size_mb(out)
            tokenizer.save_pretrained(str(out))
    train_samples = state.global_step * cfg.train.batch_size * cfg.train.gradient_accumulation_steps
    return TrainResult(
        params=params,
        wall_s=wall,
        train_samples=train_samples,
        train_tokens=train_samples * float(np.mean(data["train"]["length"])),  # the mean row's tokens, unpadded
        eval_s=eval_s,
        best_metric=float(state.best_metric) if state.best_metric is not None else None,
        best_step=best_step,
        peak_memory_mb=peak_memory_mb(),
        saved_mb=saved,
        steps=state.global_step,
        runtime=runtime_info(trainer.args),
        log_history=state.log_history,
    )

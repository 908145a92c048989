"""Method registry: a method name maps to how a pretrained model is wrapped, trained, saved, loaded and merged.

Adding a method means adding one module in this package (decorated with `@register_method`) and one
YAML file in conf/method/; modules here are discovered on import, nothing else needs touching. A method's
typed config (its dataclass) holds its defaults; the YAML only selects it. Modules here import torch, peft
and transformers inside the functions that use them, so registering the configs stays fast.
Methods never name a task: the run's task (the model's head) gives them what differs, such as peft's task type.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omegaconf import MISSING

from pipeline.errors import PipelineError
from pipeline.ranges import positive
from pipeline.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    from torch import nn
    from transformers import TrainerCallback

    from pipeline.context import RunContext
    from pipeline.stages.train import TrainResult
    from pipeline.tasks import Task

TextsAndLabels = tuple[list[str], list[int]]


@dataclass
class MethodConfig:
    """Fields every method config has; each method subclasses it with its own typed knobs and their defaults."""

    name: str = MISSING
    # The learning rate this method trains well with; train.learning_rate defaults to it (conf/train/default.yaml).
    learning_rate: float = positive(2e-5)


class BaseMethod(ABC):
    """What every registered method declares: its name, typed config, how it trains and predicts, what it cannot do."""

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]]
    merge_skip_reason: ClassVar[str | None] = None  # None: `merge` folds the method into the base weights
    export_skip_reason: ClassVar[str | None] = None  # None: `export` writes an ONNX model
    explore_skip_reason: ClassVar[str | None] = None  # None: `explore` embeds the trained model as well
    tasks: ClassVar[tuple[str, ...] | None] = None  # the tasks this method can train; None: every task
    multi_process: ClassVar[bool] = False  # trains under DDP with train.nproc_per_node > 1 (the Trainer's methods)

    @abstractmethod
    def train(self, ctx: RunContext) -> TrainResult:
        """Train on the run's splits and save the result to `ctx.layout.model` (the train stage's work)."""

    @abstractmethod
    def trained_outputs(self, ctx: RunContext, split: str, batch_size: int) -> np.ndarray:
        """What the trained model outputs (as the task's `outputs`) on a split's rows, in split order."""

    def unsupported_reason(self, model: nn.Module) -> str | None:
        """Why this method cannot run on this model architecture at all, or None if it can."""
        return None

    def check_task(self, task: Task) -> None:
        """Raise PipelineError before any work if this method cannot train the run's task."""
        if self.tasks is not None and task.name not in self.tasks:
            working = [m.name for m in registered_methods() if m.tasks is None or task.name in m.tasks]
            raise PipelineError(
                f"method.name: {self.name} works only with task={'|'.join(self.tasks)}, not {task.name}; "
                f"methods for {task.name}: {', '.join(working)}"
            )

    def check_applicable(self, model: nn.Module, cfg: Any, model_cfg: Any) -> None:
        """Raise PipelineError before any work if this method cannot run on this model with this config."""
        reason = self.unsupported_reason(model)
        if reason:
            working = [m for m in applicable_methods(model) if m != self.name]
            raise PipelineError(
                f"method.name: {self.name} cannot run on {type(model).__name__}: {reason}; "
                f"methods that work on it: {', '.join(working)}"
            )


class Method(BaseMethod):
    """A fine-tuning method: turns a pretrained model into a trainable one and back; the Trainer trains it."""

    # False: the Trainer cannot reload this method's checkpoints into the training model, so the train stage
    # rebuilds the best checkpoint with `load` instead (peft's prompt-learning methods).
    trainer_loads_best: ClassVar[bool] = True
    multi_process = True

    def base_load_kwargs(self, cfg: Any) -> dict[str, Any]:
        """Extra `from_pretrained` arguments for the model this method trains on (QLoRA: 4-bit weights)."""
        return {}

    def callbacks(self, model: nn.Module, cfg: Any) -> list[TrainerCallback]:
        """Trainer callbacks the method needs during training (AdaLoRA: rank reallocation)."""
        return []

    @abstractmethod
    def wrap(self, model: nn.Module, cfg: Any, model_cfg: Any) -> nn.Module:
        """Return the model to train (frozen base plus new parameters, or the model itself)."""

    @abstractmethod
    def save(self, model: nn.Module, path: Path) -> None:
        """Write what training produced (an adapter, or a whole model) to `path`."""

    @abstractmethod
    def load(self, base_model: nn.Module, path: Path) -> nn.Module:
        """Rebuild the trained model from a fresh base model and what `save` wrote."""

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the method's parameters into a plain transformers model."""
        raise PipelineError(f"method.name: {self.name} cannot be merged ({self.merge_skip_reason})")

    def train(self, ctx: RunContext) -> TrainResult:
        if ctx.cfg.train.nproc_per_node > 1:
            from pipeline.distributed import launch

            return launch(ctx)
        from pipeline.finetune import fine_tune

        return fine_tune(ctx, self)

    def trained_outputs(self, ctx: RunContext, split: str, batch_size: int) -> np.ndarray:
        return ctx.task.outputs(ctx.trained_model(), ctx.dataset("tokenize")[split], ctx, batch_size)


class Baseline(BaseMethod):
    """A non-transformer reference model trained on the split's raw texts (no Trainer, no encoder)."""

    merge_skip_reason = "a baseline has no adapter to merge"
    explore_skip_reason = "a baseline has no encoder embeddings"
    tasks = ("classification",)  # it fits texts to class ids

    @abstractmethod
    def fit(self, train: TextsAndLabels, validation: TextsAndLabels, cfg: Any, seed: int) -> tuple[Any, float]:
        """Train on the training texts, select settings on validation; return the model and its validation macro-F1."""

    @abstractmethod
    def n_parameters(self, fitted: Any) -> int:
        """Number of learned parameters, comparable with the trainable count of the other methods."""

    @abstractmethod
    def save(self, fitted: Any, path: Path) -> None:
        """Write the fitted model to the directory `path`."""

    @abstractmethod
    def logits(self, path: Path, texts: list[str]) -> np.ndarray:
        """Per-class scores (n_rows, n_labels) of the model saved at `path`; argmax is the prediction."""

    def train(self, ctx: RunContext) -> TrainResult:
        """Fit on the split's raw texts and targets; accounted like the fine-tuning methods."""
        from pipeline.atomic import atomic_dir
        from pipeline.data import TEXT
        from pipeline.models import ParameterCounts
        from pipeline.stages.train import TrainResult, dir_size_mb, peak_memory_mb

        split, target = ctx.dataset("split"), ctx.task.target_column
        train, validation = split["train"], split["validation"]
        start = time.perf_counter()
        fitted, val_score = self.fit(
            (train[TEXT], train[target]), (validation[TEXT], validation[target]), ctx.cfg.method, ctx.cfg.seed
        )
        wall = time.perf_counter() - start
        n = self.n_parameters(fitted)
        with atomic_dir(ctx.layout.model) as out:
            self.save(fitted, out)
            saved = dir_size_mb(out)
        return TrainResult(
            params=ParameterCounts(total=n, trainable=n, trainable_method=n, trainable_head=0),
            wall_s=wall,
            train_samples=len(train),
            eval_s=0.0,
            best_metric=val_score,
            best_step=None,
            peak_memory_mb=peak_memory_mb(),
            saved_mb=saved,
            steps=0,
            runtime={"device": "cpu", "library": "scikit-learn"},
        )

    def trained_outputs(self, ctx: RunContext, split: str, batch_size: int) -> np.ndarray:
        from pipeline.data import TEXT

        return self.logits(ctx.layout.model, ctx.dataset("split")[split][TEXT])


_METHODS: Registry[BaseMethod] = Registry("method", __name__, __path__)
register_method = _METHODS.register  # class decorator: make a method available under `cls.name`


def registered_methods() -> list[BaseMethod]:
    """Every registered method, sorted by name."""
    return _METHODS.all()


def get_method(name: str) -> BaseMethod:
    """The method registered as `name`, or a PipelineError listing the known ones."""
    return _METHODS.get(name)


def applicable_methods(model: nn.Module) -> list[str]:
    """Names of the registered methods that can run on `model`'s architecture and train its task."""
    from pipeline.tasks import task_of

    task = task_of(model).name
    return [
        method.name
        for method in registered_methods()
        if (method.tasks is None or task in method.tasks) and method.unsupported_reason(model) is None
    ]

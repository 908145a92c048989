"""Method registry: a method name maps to how a pretrained classifier is wrapped, saved, loaded and merged.

Adding a method means adding one module in this package (decorated with `@register_method`) and one
YAML file in conf/method/; modules here are discovered on import, nothing else needs touching.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from omegaconf import MISSING
from torch import nn
from transformers import TrainerCallback

from pipeline.errors import PipelineError

TextsAndLabels = tuple[list[str], list[int]]


@dataclass
class MethodConfig:
    """Fields every method config has; each method subclasses it with its own typed knobs."""

    name: str = MISSING
    # The learning rate this method trains well with; train.learning_rate defaults to it (conf/train/default.yaml).
    learning_rate: float = 2e-5


class BaseMethod(ABC):
    """What every registered method declares: its name, typed config, and what it cannot do."""

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]]
    merge_skip_reason: ClassVar[str | None] = None  # None: `merge` folds the method into the base weights
    export_skip_reason: ClassVar[str | None] = None  # None: `export` writes an ONNX model

    def unsupported_reason(self, model: nn.Module) -> str | None:
        """Why this method cannot run on this model architecture at all, or None if it can."""
        return None

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
    """A fine-tuning method: turns a pretrained classifier into a trainable model and back."""

    # False: the Trainer cannot reload this method's checkpoints into the training model, so the train stage
    # rebuilds the best checkpoint with `load` instead (peft's prompt-learning methods).
    trainer_loads_best: ClassVar[bool] = True

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


class Baseline(BaseMethod):
    """A non-transformer reference model trained on the split's raw texts (no Trainer, no encoder)."""

    merge_skip_reason = "a baseline has no adapter to merge"

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


_REGISTRY: dict[str, BaseMethod] = {}


def register_method(cls: type[BaseMethod]) -> type[BaseMethod]:
    """Class decorator: make a method available under `cls.name`."""
    if cls.name in _REGISTRY:
        raise RuntimeError(f"method {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def registered_methods() -> list[BaseMethod]:
    """Every registered method, sorted by name."""
    _discover()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_method(name: str) -> BaseMethod:
    """The method registered as `name`, or a PipelineError listing the known ones."""
    _discover()
    if name not in _REGISTRY:
        raise PipelineError(f"method.name: unknown method {name!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def applicable_methods(model: nn.Module) -> list[str]:
    """Names of the registered methods that can run on `model`'s architecture."""
    return [method.name for method in registered_methods() if method.unsupported_reason(model) is None]

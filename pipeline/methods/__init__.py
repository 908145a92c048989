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

from omegaconf import MISSING
from torch import nn

from pipeline.errors import PipelineError


@dataclass
class MethodConfig:
    """Fields every method config has; each method subclasses it with its own typed knobs."""

    name: str = MISSING


class Method(ABC):
    """How one fine-tuning method turns a pretrained classifier into a trainable model and back."""

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]]
    merge_skip_reason: ClassVar[str | None] = None  # None: `merge` folds the method into the base weights

    def check_applicable(self, model: nn.Module, cfg: Any, model_cfg: Any) -> None:  # noqa: B027 (optional hook)
        """Raise PipelineError before any work if this method cannot run on this model."""

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


_REGISTRY: dict[str, Method] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available under `cls.name`."""
    if cls.name in _REGISTRY:
        raise RuntimeError(f"method {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def registered_methods() -> list[Method]:
    """Every registered method, sorted by name."""
    _discover()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_method(name: str) -> Method:
    """The method registered as `name`, or a PipelineError listing the known ones."""
    _discover()
    if name not in _REGISTRY:
        raise PipelineError(f"method.name: unknown method {name!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name]

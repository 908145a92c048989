"""Full fine-tuning: every weight of the pretrained model trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.methods import Method, MethodConfig, register_method
from pipeline.ranges import positive

if TYPE_CHECKING:
    from torch import nn


@dataclass
class FullConfig(MethodConfig):
    name: str = "full"
    learning_rate: float = positive(5e-5)  # every weight moves: a small step


@register_method
class FullFineTuning(Method):
    name = "full"
    config_cls = FullConfig
    merge_skip_reason = "full fine-tuning has no adapter: the trained model is already a plain model"

    def wrap(self, model: nn.Module, cfg: Any, model_cfg: Any) -> nn.Module:
        return model

    def save(self, model: nn.Module, path: Path) -> None:
        model.save_pretrained(path)

    def load(self, base_model: nn.Module, path: Path) -> nn.Module:
        return type(base_model).from_pretrained(path)  # the trained weights, in the base model's (task's) class

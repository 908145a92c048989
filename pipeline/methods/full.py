"""Full fine-tuning: every weight of the pretrained model trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoModelForSequenceClassification

from pipeline.methods import Method, MethodConfig, register_method


@dataclass
class FullConfig(MethodConfig):
    name: str = "full"


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
        return AutoModelForSequenceClassification.from_pretrained(path)

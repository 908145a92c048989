"""LoRA and DoRA: trainable low-rank updates on chosen linear layers; mergeable into the base weights."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from pipeline.config import value
from pipeline.methods import MethodConfig, register_method
from pipeline.methods.peft_family import PeftMethod, resolve_target_modules
from pipeline.ranges import positive, probability

if TYPE_CHECKING:
    from peft import LoraConfig
    from torch import nn


class LoraBias(str, Enum):
    """Which biases train beside the LoRA matrices (peft's LoraConfig.bias); an Enum, so Hydra refuses others."""

    none = "none"
    all = "all"
    lora_only = "lora_only"


@dataclass
class LoraMethodConfig(MethodConfig):
    name: str = "lora"
    learning_rate: float = positive(2e-3)
    r: int = positive(16)
    alpha: int = positive(32)
    dropout: float = probability(0.1)
    target_modules: Any = "attention_qv"  # a set in model.target_module_sets, "all-linear", or a list
    bias: LoraBias = LoraBias.none


@register_method
class Lora(PeftMethod):
    name = "lora"
    config_cls = LoraMethodConfig
    use_dora = False

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> LoraConfig:
        from peft import LoraConfig

        return LoraConfig(
            task_type=task_type,
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=resolve_target_modules(cfg.target_modules, model_cfg, model),
            bias=value(cfg.bias),
            use_dora=self.use_dora,
        )


@dataclass
class DoraMethodConfig(LoraMethodConfig):
    name: str = "dora"


@register_method
class Dora(Lora):
    """DoRA: LoRA on the direction of each weight plus a trainable magnitude vector per output."""

    name = "dora"
    config_cls = DoraMethodConfig
    use_dora = True

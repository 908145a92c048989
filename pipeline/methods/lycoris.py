"""LoHa and LoKr (the LyCORIS family): weight updates as Hadamard or Kronecker products of small factors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.methods import MethodConfig, register_method
from pipeline.methods.peft_family import PeftMethod, resolve_target_modules
from pipeline.ranges import positive, probability

if TYPE_CHECKING:
    from peft.tuners.lycoris_utils import LycorisConfig
    from torch import nn


@dataclass
class LohaMethodConfig(MethodConfig):
    name: str = "loha"
    learning_rate: float = positive(2e-3)
    r: int = positive(8)
    alpha: int = positive(16)
    rank_dropout: float = probability(0.0)
    module_dropout: float = probability(0.0)
    target_modules: Any = "attention_qv"


@dataclass
class LokrMethodConfig(LohaMethodConfig):
    name: str = "lokr"


class LycorisMethod(PeftMethod):
    peft_config_name: str  # the peft config class, imported when first used

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> LycorisConfig:
        import peft

        return getattr(peft, self.peft_config_name)(
            task_type=task_type,
            r=cfg.r,
            alpha=cfg.alpha,
            rank_dropout=cfg.rank_dropout,
            module_dropout=cfg.module_dropout,
            target_modules=resolve_target_modules(cfg.target_modules, model_cfg, model),
        )


@register_method
class LoHa(LycorisMethod):
    name = "loha"
    config_cls = LohaMethodConfig
    peft_config_name = "LoHaConfig"


@register_method
class LoKr(LycorisMethod):
    name = "lokr"
    config_cls = LokrMethodConfig
    peft_config_name = "LoKrConfig"

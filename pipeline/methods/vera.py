"""VeRA: one pair of frozen random low-rank matrices shared by all layers; only per-layer scaling vectors train."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.methods import MethodConfig, register_method
from pipeline.methods.peft_family import PeftMethod, resolve_target_modules
from pipeline.ranges import positive, probability

if TYPE_CHECKING:
    from peft import VeraConfig
    from torch import nn


@dataclass
class VeraMethodConfig(MethodConfig):
    name: str = "vera"
    learning_rate: float = positive(1e-2)  # VeRA's vectors need a much larger step than LoRA's matrices
    r: int = positive(256)
    dropout: float = probability(0.0)
    d_initial: float = positive(0.1)
    target_modules: Any = "attention_qv"


@register_method
class Vera(PeftMethod):
    name = "vera"
    config_cls = VeraMethodConfig

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> VeraConfig:
        from peft import VeraConfig

        return VeraConfig(
            task_type=task_type,
            r=cfg.r,
            vera_dropout=cfg.dropout,
            d_initial=cfg.d_initial,
            target_modules=resolve_target_modules(cfg.target_modules, model_cfg, model),
            save_projection=True,  # the adapter folder is self-contained: no reliance on the PRNG on reload
        )

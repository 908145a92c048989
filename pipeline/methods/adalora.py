"""AdaLoRA: LoRA whose rank budget is reallocated across layers during training by importance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.methods import MethodConfig, register_method
from pipeline.methods.peft_family import PeftMethod, resolve_target_modules
from pipeline.ranges import positive, probability

if TYPE_CHECKING:
    from peft import AdaLoraConfig
    from torch import nn
    from transformers import TrainerCallback

PLACEHOLDER_STEPS = 1000  # peft needs a step count at construction; the callback sets the Trainer's real one


@dataclass
class AdaloraMethodConfig(MethodConfig):
    name: str = "adalora"
    learning_rate: float = positive(2e-3)
    init_r: int = positive(12)  # rank every layer starts with
    target_r: int = positive(8)  # average rank left after pruning
    alpha: int = positive(32)
    dropout: float = probability(0.1)
    target_modules: Any = "attention_qv"
    tinit: float = probability(0.1)  # fraction of steps trained before any rank is pruned
    tfinal: float = probability(0.2)  # fraction of final steps trained with the ranks fixed
    delta_t: int = positive(10)  # steps between two rank reallocations


@register_method
class AdaLora(PeftMethod):
    name = "adalora"
    config_cls = AdaloraMethodConfig
    # Once pruning ends, the live model's config carries the final rank pattern while earlier checkpoints hold
    # full-rank weights, so the Trainer cannot load them back into it; a fresh base loads them consistently.
    trainer_loads_best = False

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> AdaLoraConfig:
        from peft import AdaLoraConfig

        return AdaLoraConfig(
            task_type=task_type,
            init_r=cfg.init_r,
            target_r=cfg.target_r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=resolve_target_modules(cfg.target_modules, model_cfg, model),
            total_step=PLACEHOLDER_STEPS,
            tinit=int(cfg.tinit * PLACEHOLDER_STEPS),
            tfinal=int(cfg.tfinal * PLACEHOLDER_STEPS),
            deltaT=cfg.delta_t,
        )

    def callbacks(self, model: nn.Module, cfg: Any) -> list[TrainerCallback]:
        from pipeline.tuners.adalora import RankAllocation

        return [RankAllocation(model, cfg)]

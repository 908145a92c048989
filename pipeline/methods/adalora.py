"""AdaLoRA: LoRA whose rank budget is reallocated across layers during training by importance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peft import AdaLoraConfig, TaskType
from torch import nn
from transformers import TrainerCallback

from pipeline.methods import MethodConfig, register_method
from pipeline.methods.peft_family import PeftMethod, resolve_target_modules

PLACEHOLDER_STEPS = 1000  # peft needs a step count at construction; the callback sets the Trainer's real one


@dataclass
class AdaloraMethodConfig(MethodConfig):
    name: str = "adalora"
    learning_rate: float = 2e-3
    init_r: int = 12  # rank every layer starts with
    target_r: int = 8  # average rank left after pruning
    alpha: int = 32
    dropout: float = 0.1
    target_modules: Any = "attention_qv"
    tinit: float = 0.1  # fraction of steps trained before any rank is pruned
    tfinal: float = 0.2  # fraction of final steps trained with the ranks fixed
    delta_t: int = 10  # steps between two rank reallocations


class RankAllocation(TrainerCallback):
    """Runs AdaLoRA's budget step after each optimizer step (peft leaves this call to the training loop)."""

    def __init__(self, model: nn.Module, cfg: Any) -> None:
        self.model, self.cfg = model, cfg

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        config = self.model.peft_config["default"]
        config.tinit = int(self.cfg.tinit * state.max_steps)
        config.tfinal = int(self.cfg.tfinal * state.max_steps)
        self.model.base_model.rankallocator.set_total_step(state.max_steps)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.model.base_model.update_and_allocate(state.global_step)


@register_method
class AdaLora(PeftMethod):
    name = "adalora"
    config_cls = AdaloraMethodConfig
    # Once pruning ends, the live model's config carries the final rank pattern while earlier checkpoints hold
    # full-rank weights, so the Trainer cannot load them back into it; a fresh base loads them consistently.
    trainer_loads_best = False

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module) -> AdaLoraConfig:
        return AdaLoraConfig(
            task_type=TaskType.SEQ_CLS,
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
        return [RankAllocation(model, cfg)]

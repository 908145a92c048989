"""AdaLoRA's rank reallocation as a Trainer callback (peft leaves calling `update_and_allocate` to the loop)."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import TrainerCallback


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

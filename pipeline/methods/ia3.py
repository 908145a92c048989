"""IA3: learned vectors that rescale keys, values and the feed-forward activations; mergeable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.methods import MethodConfig, register_method
from pipeline.methods.peft_family import PeftMethod, resolve_target_modules
from pipeline.ranges import positive

if TYPE_CHECKING:
    from peft import IA3Config
    from torch import nn


@dataclass
class Ia3MethodConfig(MethodConfig):
    name: str = "ia3"
    learning_rate: float = positive(1e-2)  # a few thousand scaling factors: needs a large step
    target_modules: Any = "ia3"  # keys, values and feed-forward output (a set in model.target_module_sets)
    feedforward_modules: Any = "ia3_feedforward"  # the subset whose input (not output) is rescaled


@register_method
class Ia3(PeftMethod):
    name = "ia3"
    config_cls = Ia3MethodConfig

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> IA3Config:
        from peft import IA3Config

        targets = resolve_target_modules(cfg.target_modules, model_cfg, model)
        feedforward = resolve_target_modules(cfg.feedforward_modules, model_cfg, model)
        if not set(feedforward) <= set(targets):
            raise PipelineError(
                f"method.feedforward_modules: {feedforward} must be a subset of target_modules {targets}"
            )
        return IA3Config(task_type=task_type, target_modules=targets, feedforward_modules=feedforward)

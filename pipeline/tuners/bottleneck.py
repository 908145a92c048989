"""Bottleneck adapters (Houlsby, Pfeiffer) as a peft tuner, so saving, loading and accounting match peft's.

Written here because peft 0.21 has no bottleneck adapter and AdapterHub's `adapters` pins transformers 4.x.
Each adapter is `h + up(act(down(h)))` on the output of a sub-layer's output projection, before the residual
add and layer norm. `up` starts at zero, so training starts from the pretrained function exactly.
Importing this module registers the tuner with peft (`register_peft_method`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from peft import PeftConfig, PeftType
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import register_peft_method
from torch import nn

PEFT_NAME = "bottleneck"
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _add_peft_type(name: str) -> None:
    """Add `name` to peft's PeftType enum, which `register_peft_method` requires and peft offers no way to extend.

    Done as Enum itself stores a member (member map, value map, name list, class attribute).
    """
    key = name.upper()
    if key in PeftType.__members__:
        return
    member = str.__new__(PeftType, key)
    member._name_, member._value_ = key, key
    PeftType._member_map_[key] = member
    PeftType._value2member_map_[key] = member
    PeftType._member_names_.append(key)
    type.__setattr__(PeftType, key, member)


@dataclass
class BottleneckConfig(PeftConfig):
    """peft config of a bottleneck adapter; target_modules are the projections the adapters follow."""

    bottleneck_size: int = field(default=64, metadata={"help": "width of the adapter's hidden layer"})
    non_linearity: str = field(default="relu", metadata={"help": f"one of {sorted(ACTIVATIONS)}"})
    target_modules: list[str] | str | None = field(default=None)
    modules_to_save: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PeftType[PEFT_NAME.upper()]
        if self.non_linearity not in ACTIVATIONS:
            raise ValueError(f"non_linearity {self.non_linearity!r}; expected one of {sorted(ACTIVATIONS)}")
        if self.bottleneck_size < 1:
            raise ValueError(f"bottleneck_size must be >= 1, got {self.bottleneck_size}")


class BottleneckLayer(BaseTunerLayer):
    """A linear layer followed by residual bottleneck adapters, one per adapter name."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")
    other_param_names = ("bottleneck_act",)

    def __init__(self, base_layer: nn.Module) -> None:
        self.base_layer = base_layer
        self.bottleneck_down = nn.ModuleDict({})
        self.bottleneck_up = nn.ModuleDict({})
        self.bottleneck_act = nn.ModuleDict({})
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self.out_features = base_layer.out_features

    def update_layer(self, adapter_name: str, config: BottleneckConfig) -> None:
        weight = self.get_base_layer().weight
        down = nn.Linear(self.out_features, config.bottleneck_size, dtype=torch.float32, device=weight.device)
        up = nn.Linear(config.bottleneck_size, self.out_features, dtype=torch.float32, device=weight.device)
        nn.init.zeros_(up.weight)
        nn.init.zeros_(up.bias)
        self.bottleneck_down[adapter_name] = down
        self.bottleneck_up[adapter_name] = up
        self.bottleneck_act[adapter_name] = ACTIVATIONS[config.non_linearity]()
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)


class BottleneckLinear(nn.Module, BottleneckLayer):
    def __init__(self, base_layer: nn.Linear, adapter_name: str, config: BottleneckConfig) -> None:
        super().__init__()
        BottleneckLayer.__init__(self, base_layer)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError("a bottleneck adapter has a non-linearity: it cannot be merged into the linear weights")

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        hidden = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return hidden
        for name in self.active_adapters:
            if name in self.bottleneck_down:
                down, up, act = self.bottleneck_down[name], self.bottleneck_up[name], self.bottleneck_act[name]
                hidden = hidden + up(act(down(hidden.to(down.weight.dtype)))).to(hidden.dtype)
        return hidden


class BottleneckModel(BaseTuner):
    """peft tuner that puts a BottleneckLinear in place of each targeted linear layer."""

    prefix = f"{PEFT_NAME}_"
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: dict[str, list[str]] = {}

    def _create_and_replace(
        self,
        config: BottleneckConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        if isinstance(target, BottleneckLayer):
            target.update_layer(adapter_name, config)
            return
        if not isinstance(target, nn.Linear):
            raise TypeError(f"bottleneck adapters follow nn.Linear layers; {current_key} is {type(target).__name__}")
        self._replace_module(parent, target_name, BottleneckLinear(target, adapter_name, config), target)


_add_peft_type(PEFT_NAME)
register_peft_method(name=PEFT_NAME, config_cls=BottleneckConfig, model_cls=BottleneckModel)

"""BitFit: only the encoder's bias terms (and the new head) train; every weight matrix stays frozen.

Written here because peft has no bias-only method. What it trains is part of the plain model, so the trained
model is already deployable (nothing to merge); only the trained tensors are saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.methods import Method, MethodConfig, register_method
from pipeline.models import head_module_names
from pipeline.ranges import positive

if TYPE_CHECKING:
    from torch import nn

WEIGHTS = "bitfit.safetensors"


@dataclass
class BitfitMethodConfig(MethodConfig):
    name: str = "bitfit"
    learning_rate: float = positive(2e-3)


def is_trained(name: str, heads: list[str]) -> bool:
    return name.endswith(".bias") or name.split(".", 1)[0] in heads


@register_method
class BitFit(Method):
    name = "bitfit"
    config_cls = BitfitMethodConfig
    merge_skip_reason = "BitFit trains the model's own bias terms: the trained model is already a plain model"

    def unsupported_reason(self, model: nn.Module) -> str | None:
        if not any(name.endswith(".bias") for name, _ in model.named_parameters()):
            return "the model has no bias terms to train (Llama- and T5-style layers have none)"
        return None

    def wrap(self, model: nn.Module, cfg: Any, model_cfg: Any) -> nn.Module:
        heads = head_module_names(model)
        for name, param in model.named_parameters():
            param.requires_grad_(is_trained(name, heads))
        return model

    def save(self, model: nn.Module, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        trained = {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
        save_file(trained, str(path / WEIGHTS))

    def load(self, base_model: nn.Module, path: Path) -> nn.Module:
        from safetensors.torch import load_file

        trained = load_file(str(path / WEIGHTS))
        missing = set(trained) - {name for name, _ in base_model.named_parameters()}
        if missing:
            raise ValueError(f"{path / WEIGHTS} holds tensors the base model lacks: {sorted(missing)[:3]}")
        base_model.load_state_dict(trained, strict=False)
        return base_model

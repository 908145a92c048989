"""Prompt-learning methods: trainable virtual tokens instead of weight updates (peft prefix, prompt, P-tuning).

None merges into the weights: the virtual tokens are extra inputs, so the trained model is the base plus them.
peft saves their final embeddings (the reparameterisation MLP folded in), which the Trainer cannot load back into
a model still training through the MLP, so the train stage loads the best checkpoint itself.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from pipeline.config import value
from pipeline.methods import MethodConfig, register_method
from pipeline.methods.peft_family import PeftMethod
from pipeline.models import encoder_of
from pipeline.ranges import positive

if TYPE_CHECKING:
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig
    from torch import nn


def encoder_shape(model: nn.Module) -> dict[str, int]:
    """Sizes peft needs explicitly for encoders whose config names them differently (DistilBERT: dim, n_heads)."""
    config = model.config
    return {
        "token_dim": config.hidden_size,
        "num_attention_heads": config.num_attention_heads,
        "num_layers": config.num_hidden_layers,
    }


class PromptLearningMethod(PeftMethod):
    merge_skip_reason = "virtual tokens are extra inputs, not weight updates: nothing to fold into the weights"
    trainer_loads_best = False


@dataclass
class PrefixMethodConfig(MethodConfig):
    name: str = "prefix"
    learning_rate: float = positive(2e-3)  # 1e-2 collapsed to one class on AG News/MiniLM (README, method comparison)
    num_virtual_tokens: int = positive(20)
    projection: bool = True  # reparameterise the prefix through a 2-layer MLP (more stable training)
    projection_hidden_size: int = positive(128)


@register_method
class PrefixTuning(PromptLearningMethod):
    """Trainable key/value prefixes in every attention layer (needs an encoder that accepts past_key_values)."""

    name = "prefix"
    config_cls = PrefixMethodConfig

    def unsupported_reason(self, model: nn.Module) -> str | None:
        if "past_key_values" not in inspect.signature(encoder_of(model).forward).parameters:
            return "prefix tuning feeds past_key_values into every attention layer, which this encoder does not accept"
        return None

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> PrefixTuningConfig:
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(
            task_type=task_type,
            num_virtual_tokens=cfg.num_virtual_tokens,
            prefix_projection=cfg.projection,
            encoder_hidden_size=cfg.projection_hidden_size,
            **encoder_shape(model),
        )


@dataclass
class PromptMethodConfig(MethodConfig):
    name: str = "prompt"
    learning_rate: float = positive(3e-2)
    num_virtual_tokens: int = positive(20)


@register_method
class PromptTuning(PromptLearningMethod):
    """Trainable input embeddings prepended to every text (soft prompt)."""

    name = "prompt"
    config_cls = PromptMethodConfig

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> PromptTuningConfig:
        from peft import PromptTuningConfig

        return PromptTuningConfig(
            task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens, **encoder_shape(model)
        )


class Reparameterization(str, Enum):
    """The encoder that produces p-tuning's prompt from its virtual-token embeddings (peft's
    PromptEncoderReparameterizationType); an Enum, so Hydra refuses others."""

    MLP = "MLP"
    LSTM = "LSTM"


@dataclass
class PtuningMethodConfig(MethodConfig):
    name: str = "ptuning"
    learning_rate: float = positive(1e-2)
    num_virtual_tokens: int = positive(20)
    encoder_hidden_size: int = positive(128)
    reparameterization: Reparameterization = Reparameterization.MLP


@register_method
class PTuning(PromptLearningMethod):
    """Soft prompt produced by a small trainable encoder (MLP or LSTM) over virtual-token embeddings."""

    name = "ptuning"
    config_cls = PtuningMethodConfig

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> PromptEncoderConfig:
        from peft import PromptEncoderConfig

        return PromptEncoderConfig(
            task_type=task_type,
            num_virtual_tokens=cfg.num_virtual_tokens,
            encoder_hidden_size=cfg.encoder_hidden_size,
            encoder_reparameterization_type=value(cfg.reparameterization),
            **encoder_shape(model),
        )

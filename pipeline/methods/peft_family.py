"""Shared plumbing for methods built on peft: wrapping, target modules, save/load and merge."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.methods import Method

if TYPE_CHECKING:
    from peft import PeftConfig
    from torch import nn

ALL_LINEAR = "all-linear"


def linear_module_names(model: nn.Module) -> list[str]:
    """Qualified names of the model's nn.Linear modules (what adapter methods can target)."""
    from torch import nn

    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def resolve_target_modules(spec: Any, model_cfg: Any, model: nn.Module) -> list[str] | str:
    """Turn `method.target_modules` (a named set of the model config, or a list) into module suffixes.

    Every suffix must match at least one linear module, so a typo fails here instead of peft
    silently training nothing or failing deep inside.
    """
    sets = dict(model_cfg.target_module_sets)
    if isinstance(spec, str):
        if spec in (ALL_LINEAR, "all_linear"):
            return ALL_LINEAR
        if spec not in sets:
            raise PipelineError(
                f"method.target_modules: unknown set {spec!r}; expected one of "
                f"{sorted(sets) + [ALL_LINEAR]} or a list of module names"
            )
        targets = list(sets[spec])
    else:
        targets = [str(t) for t in spec]
    linear = linear_module_names(model)
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in linear)]
    if missing:
        short = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise PipelineError(
            f"method.target_modules: {missing} not found in {type(model).__name__}; its linear modules are {short}"
        )
    return targets


class PeftMethod(Method):
    """A method expressed as a peft config; peft does the wrapping, saving, loading and merging."""

    @abstractmethod
    def peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module, task_type: str) -> PeftConfig:
        """The peft config for this method on this model; `task_type` is the peft TaskType of the model's task."""

    def model_peft_config(self, cfg: Any, model_cfg: Any, model: nn.Module) -> PeftConfig:
        """The peft config for `model`, with the task type of the task whose head the model has."""
        from pipeline.tasks import task_of

        return self.peft_config(cfg, model_cfg, model, task_of(model).peft_task_type)

    def check_applicable(self, model: nn.Module, cfg: Any, model_cfg: Any) -> None:
        super().check_applicable(model, cfg, model_cfg)
        try:
            self.model_peft_config(cfg, model_cfg, model)
        except (ValueError, TypeError) as exc:  # peft validates its config in __post_init__
            raise PipelineError(f"method: invalid {self.name} settings ({exc})") from exc

    def wrap(self, model: nn.Module, cfg: Any, model_cfg: Any) -> nn.Module:
        from peft import get_peft_model

        return get_peft_model(model, self.model_peft_config(cfg, model_cfg, model))

    def save(self, model: nn.Module, path: Path) -> None:
        model.save_pretrained(path)

    def load(self, base_model: nn.Module, path: Path) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, path)

    def merge(self, model: nn.Module) -> nn.Module:
        if self.merge_skip_reason:
            return super().merge(model)
        return model.merge_and_unload()

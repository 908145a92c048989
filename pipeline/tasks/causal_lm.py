"""Causal language modelling (decoder-only: Llama, SmolLM2, OPT, Bloom): the prompt, then the target, one sequence.

The prompt goes through the tokenizer's chat template when it has one (instruction-tuned models), else the plain
`### Instruction / ### Response` format; the loss covers the target tokens (and EOS) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from pipeline.config import value
from pipeline.data import LABEL, TEXT
from pipeline.errors import PipelineError
from pipeline.tasks import register_task
from pipeline.tasks.generative import GROUP, IGNORE, TARGET, GenerativeConfig, GenerativeTask

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from torch import nn
    from transformers import PreTrainedTokenizerBase

PLAIN = "### Instruction:\n{prompt}\n\n### Response:\n"


class PromptFormat(str, Enum):
    """How a rendered prompt is wrapped (an Enum, so Hydra refuses an unknown one when it composes the config)."""

    auto = "auto"  # chat if the tokenizer has a chat template, else plain
    chat = "chat"  # the tokenizer's chat template
    plain = "plain"  # ### Instruction / ### Response
    none = "none"  # the prompt as it is, for base models continuing text


FORMATS = tuple(f.value for f in PromptFormat)


@dataclass
class CausalLMConfig(GenerativeConfig):
    name: str = "causal_lm"
    format: PromptFormat = PromptFormat.auto  # how a rendered prompt is wrapped (PromptFormat)


def prompt_format(tokenizer: PreTrainedTokenizerBase, name: str) -> str:
    """The format `task.format` resolves to for this tokenizer."""
    if name not in FORMATS:
        raise PipelineError(f"task.format: unknown {name!r}; expected one of {list(FORMATS)}")
    if name == "chat" and not tokenizer.chat_template:
        raise PipelineError("task.format: chat needs a tokenizer with a chat template; this one has none (use plain)")
    if name == "auto":
        return "chat" if tokenizer.chat_template else "plain"
    return name


@register_task
class CausalLM(GenerativeTask):
    name = "causal_lm"
    config_cls = CausalLMConfig
    peft_task_type = "CAUSAL_LM"
    offline_model = "smollm2"
    pooling_faults = {
        "cls": "a decoder-only model computes the first position from the first token alone, "
        "and from padding on a left-padded row"
    }

    def auto_class(self) -> type:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def encode_prompts(self, tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
        fmt = prompt_format(tokenizer, tokenizer.init_kwargs.get("pipeline_prompt_format", "auto"))
        if fmt == "chat":
            rendered = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False
                )
                for t in texts
            ]
            return tokenizer(rendered, add_special_tokens=False)["input_ids"]
        if fmt == "plain":
            texts = [PLAIN.format(prompt=t) for t in texts]
        return tokenizer(texts)["input_ids"]

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase, task_cfg: Any = None) -> PreTrainedTokenizerBase:
        """A pad token, and the prompt format saved with the tokenizer (`pipeline_prompt_format`), so predict and
        the served model wrap prompts exactly as training did."""
        tokenizer = super().prepare_tokenizer(tokenizer, task_cfg)
        if task_cfg is not None:
            tokenizer.init_kwargs["pipeline_prompt_format"] = prompt_format(tokenizer, value(task_cfg.format))
        return tokenizer

    def tokenize(self, batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, cfg: Any) -> tuple[dict, list[int]]:
        """prompt + target + EOS; labels IGNORE over the prompt; targets cut to fit model.max_length."""
        max_length = cfg.model.max_length
        prompts = self.encode_prompts(tokenizer, batch[TEXT])
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        targets = [ids + eos for ids in tokenizer(batch[TARGET], add_special_tokens=False)["input_ids"]]
        no_room = [len(p) for p in prompts if len(p) >= max_length]
        if no_room:
            raise PipelineError(
                f"model.max_length: {len(no_room)} of {len(prompts)} rows in a tokenize batch have prompts of "
                f"{max_length}+ tokens (longest {max(no_room)}), leaving no room for the target; raise "
                "model.max_length or shorten task.prompt"
            )
        columns: dict[str, list] = {
            "input_ids": [],
            "attention_mask": [],
            "labels": [],
            "length": [],
            "prompt_length": [],
        }
        for prompt, target in zip(prompts, targets, strict=True):
            target = target[: max_length - len(prompt)]
            columns["input_ids"].append(prompt + target)
            columns["attention_mask"].append([1] * (len(prompt) + len(target)))
            columns["labels"].append([IGNORE] * len(prompt) + target)
            columns["length"].append(len(prompt) + len(target))
            columns["prompt_length"].append(len(prompt))
        columns[TARGET] = batch[TARGET]
        if LABEL in batch:
            columns[GROUP] = batch[LABEL]
        return columns, [len(p) + len(t) for p, t in zip(prompts, targets, strict=True)]

    def prompt_batches(self, rows: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
        def cut(row: dict) -> dict:
            n = row["prompt_length"]
            return {"input_ids": row["input_ids"][:n], "attention_mask": row["attention_mask"][:n]}

        return rows.select_columns(["input_ids", "attention_mask", "prompt_length"]).map(
            cut, remove_columns=["prompt_length"], load_from_cache_file=False
        )

    def new_tokens(self, generated: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return generated[:, inputs.shape[1] :]

    def target_logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"]
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, -labels.shape[1] :]  # prompt tuning prepends virtual-token positions
        return logits[:, :-1], labels[:, 1:]  # position i predicts token i + 1

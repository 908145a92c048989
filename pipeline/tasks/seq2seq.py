"""Sequence-to-sequence generation (encoder-decoder: FLAN-T5, BART): the prompt is the encoder's input, the target
the decoder's (summarization, headline generation, translation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.data import LABEL, TEXT
from pipeline.tasks import register_task
from pipeline.tasks.generative import GROUP, TARGET, GenerativeConfig, GenerativeTask

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from torch import nn
    from transformers import PreTrainedTokenizerBase


@dataclass
class Seq2SeqConfig(GenerativeConfig):
    name: str = "seq2seq"
    max_target_length: int = 64  # target tokens kept (model.max_length caps the source)


@register_task
class Seq2Seq(GenerativeTask):
    name = "seq2seq"
    config_cls = Seq2SeqConfig
    peft_task_type = "SEQ_2_SEQ_LM"
    export_skip_reason = (
        "generating from ONNX needs an encoder-decoder's encoder and decoder exported apart, which is not built; "
        "the merged transformers folder ships instead (merge/model, `python -m pipeline.predict --backend pytorch`)"
    )

    def auto_class(self) -> type:
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM

    def encode_prompts(self, tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, truncation=True, max_length=tokenizer.model_max_length)["input_ids"]

    def tokenize(self, batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, cfg: Any) -> tuple[dict, list[int]]:
        full_lengths = [len(ids) for ids in tokenizer(batch[TEXT], truncation=False)["input_ids"]]
        enc = tokenizer(batch[TEXT], truncation=True, max_length=cfg.model.max_length)
        n = cfg.task.max_target_length
        labels = tokenizer(text_target=batch[TARGET], truncation=True, max_length=n)["input_ids"]
        eos = tokenizer.eos_token_id
        if eos is not None:  # T5's tokenizer appends EOS, others may not: without it the model never learns to stop
            labels = [ids if ids and ids[-1] == eos else ids[: n - 1] + [eos] for ids in labels]
        columns = {
            **enc,
            "labels": labels,
            "length": [len(ids) for ids in enc["input_ids"]],
            TARGET: batch[TARGET],
        }
        if LABEL in batch:
            columns[GROUP] = batch[LABEL]
        return columns, full_lengths

    def prompt_batches(self, rows: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
        return rows.select_columns(["input_ids", "attention_mask"])

    def new_tokens(self, generated: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return generated  # the decoder's output alone

    def target_logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        # Decoder inputs = labels shifted right, made here rather than by passing labels: with labels, a peft model
        # computes its training loss too (AdaLoRA's needs a trainable adapter, which a reloaded one lacks).
        labels = batch["labels"]
        base = getattr(model, "get_base_model", lambda: model)()
        decoder_input_ids = base.prepare_decoder_input_ids_from_labels(labels=labels)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        return model(**inputs, decoder_input_ids=decoder_input_ids).logits, labels

    def embedding_model(self, model: nn.Module) -> nn.Module:
        from pipeline.inference import EncoderStates

        return EncoderStates(model)  # the prompt's representation, with a learned peft prompt where there is one

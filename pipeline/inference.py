"""Batched, dynamically padded forward passes shared by evaluate, explore, merge and export."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from pipeline.console import batch_slices

MODEL_INPUTS = ["input_ids", "attention_mask"]


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16() -> bool:
    """Whether this machine computes bf16 matmuls in hardware: a CUDA GPU of compute capability 8.0+, or a CPU with
    AVX512-BF16 or AMX (there, about twice fp32's speed; elsewhere bf16 is emulated, slower than fp32)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)  # a T4 or V100 only emulates it
    # torch.cpu's probes are underscored, under these names since torch ~2.5; an older torch gets fp32
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(probe() for probe in probes if probe is not None)


def resolved_precision(name: str, cpu_bf16: bool = False) -> str:
    """`auto` -> bf16 where the hardware computes it natively (native_bf16): on a GPU, and with cpu_bf16 on a CPU too
    (for inference whose outputs tolerate it; CPU training stays fp32), else fp32. Other names are returned as given."""
    if name != "auto":
        return name
    return "bf16" if (cpu_bf16 or torch.cuda.is_available()) and native_bf16() else "fp32"


def autocast(precision: str) -> AbstractContextManager:
    """Inference on this process's device in `precision`: torch.autocast to bf16, or nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device().type, dtype=torch.bfloat16)
    raise ValueError(f"precision: {precision!r} is not fp32 or bf16 (resolve auto with resolved_precision first)")


@contextmanager
def exact_fp32() -> Iterator[None]:
    """IEEE fp32 matmuls inside, for parity checks: the Trainer turns TF32 on for the whole process on a GPU,
    and its 10-bit mantissas put ~1e-3 noise on logits, ten times the merge and export tolerances."""
    if hasattr(torch.backends, "fp32_precision"):  # torch >= 2.9, the API transformers sets TF32 through
        saved = torch.backends.fp32_precision
        torch.backends.fp32_precision = "ieee"
        try:
            yield
        finally:
            torch.backends.fp32_precision = saved
        return
    saved_flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_flags


def padded_batches(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int, desc: str | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of model inputs in dataset order, each padded only to its own longest row; rows counted on a bar
    named `desc` when the loop runs long."""
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    rows = dataset.select_columns(MODEL_INPUTS)
    for batch in batch_slices(len(rows), batch_size, desc):
        yield collate([rows[i] for i in range(batch.start, batch.stop)])


def onnx_logits(session: Any, batch: dict[str, torch.Tensor | np.ndarray]) -> np.ndarray:
    """An exported model's logits (onnxruntime session) for a batch of input ids and attention masks."""
    return session.run(["logits"], {k: np.asarray(batch[k]).astype(np.int64) for k in MODEL_INPUTS})[0]


def onnx_greedy(
    session: Any, input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int, eos_id: int, pad_id: int
) -> np.ndarray:
    """Greedy decoding with an exported causal LM's forward: the new token ids (rows that ended are padded).

    Written here because no maintained library generates from a plain torch.onnx graph on our versions
    (optimum-onnx pins transformers<4.58; onnxruntime-genai needs its own model format). No key/value cache:
    each step reruns the whole sequence, which is fine for the short targets scored here.
    """
    ids, mask = input_ids.astype(np.int64), attention_mask.astype(np.int64)
    done = np.zeros(len(ids), dtype=bool)
    new = []
    for _ in range(max_new_tokens):
        step = onnx_logits(session, {"input_ids": ids, "attention_mask": mask})[:, -1].argmax(-1)
        step = np.where(done, pad_id, step)
        new.append(step)
        ids = np.concatenate([ids, step[:, None]], axis=1)
        mask = np.concatenate([mask, (~done)[:, None].astype(np.int64)], axis=1)  # ended rows get padding
        done |= step == eos_id
        if done.all():
            break
    return np.stack(new, axis=1) if new else np.zeros((len(ids), 0), dtype=np.int64)


def length_order(dataset: Dataset) -> np.ndarray:
    """Row order by token count, so each padded batch holds similar lengths (far less padding)."""
    return np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")


def in_length_order(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    forward: Callable[[dict], np.ndarray],
    desc: str,
) -> np.ndarray:
    """`forward(batch)` (one numpy row per input row) over length-sorted padded batches, back in dataset order,
    with a progress bar named `desc` when it runs long.

    Sorting first pads each batch to similar lengths: on AG News, about 2.5x less compute than random batches.
    """
    order = length_order(dataset)
    out = [forward(batch) for batch in padded_batches(dataset.select(order), tokenizer, batch_size, desc)]
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    sorted_rows = np.concatenate(out)
    rows = np.empty_like(sorted_rows)
    rows[order] = sorted_rows
    return rows


@torch.inference_mode()
def predict_logits(
    model: nn.Module, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int
) -> np.ndarray:
    """Logits (n_rows, n_labels) as float32 numpy, in dataset order."""
    model.eval().to(device())

    def logits(batch: dict[str, torch.Tensor]) -> np.ndarray:
        return model(**{k: v.to(device()) for k, v in batch.items()}).logits.float().cpu().numpy()

    return in_length_order(dataset, tokenizer, batch_size, logits, "logits")


class EncoderStates(nn.Module):
    """An encoder-decoder model run whole for its encoder's hidden states (`embed` reads `.hidden_states`).

    Not the encoder module alone: a peft prompt (prompt tuning, p-tuning) is prepended to the encoder's input by the
    peft wrapper's forward, so the encoder alone would show a prompt-tuned model as unchanged. One decoder step
    (the start token) is the price of the whole forward.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.start = getattr(model, "get_base_model", lambda: model)().config.decoder_start_token_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> Any:
        start = torch.full((len(input_ids), 1), self.start, dtype=input_ids.dtype, device=input_ids.device)
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=start, output_hidden_states=True
        )
        return SimpleNamespace(hidden_states=out.encoder_hidden_states)


@torch.inference_mode()
def embed(
    model: nn.Module, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int, pooling: str
) -> np.ndarray:
    """Sentence embeddings from the model's last hidden layer: the first (CLS) token, the attention-masked mean, or
    the last real token (found by the mask, so left and right padding alike)."""
    model.eval().to(device())

    def pooled(batch: dict[str, torch.Tensor]) -> np.ndarray:
        batch = {k: v.to(device()) for k, v in batch.items()}
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1].float()
        hidden = hidden[:, -batch["input_ids"].shape[1] :]  # prompt and p-tuning prepend virtual-token positions
        if pooling == "cls":
            return hidden[:, 0].cpu().numpy()
        if pooling == "last":
            attended = batch["attention_mask"]
            last = attended.shape[1] - 1 - attended.flip(-1).argmax(-1)
            return hidden[torch.arange(len(hidden), device=hidden.device), last].cpu().numpy()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).cpu().numpy()

    return in_length_order(dataset, tokenizer, batch_size, pooled, "embeddings")

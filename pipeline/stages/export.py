"""export: deployable model -> ONNX (torch.onnx dynamo exporter), checked with onnxruntime on the test split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from datasets import load_from_disk
from torch import nn

from pipeline.atomic import atomic_dir, write_json
from pipeline.context import RunContext
from pipeline.errors import PipelineError
from pipeline.inference import MODEL_INPUTS, padded_batches, predict_logits
from pipeline.metrics import classification_metrics


@dataclass
class ExportResult:
    max_abs_diff: float
    onnx_accuracy: float
    size_mb: float

    def metrics(self) -> dict[str, float]:
        return {
            "max_abs_logit_diff": self.max_abs_diff,
            "onnx_test_accuracy": self.onnx_accuracy,
            "onnx_size_mb": self.size_mb,
        }


class _LogitsOnly(nn.Module):
    """Positional (input_ids, attention_mask) -> logits: the plain signature ONNX consumers expect."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(model: nn.Module, example: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    """Export with dynamic batch and sequence axes."""
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    program = torch.onnx.export(
        _LogitsOnly(model.cpu()).eval(),
        (example["input_ids"], example["attention_mask"]),
        dynamo=True,
        verbose=False,
        opset_version=opset,
        input_names=MODEL_INPUTS,
        output_names=["logits"],
        dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
    )
    program.save(str(path))


def onnx_logits(session: ort.InferenceSession, batch: dict[str, torch.Tensor]) -> np.ndarray:
    return session.run(["logits"], {k: batch[k].numpy().astype(np.int64) for k in MODEL_INPUTS})[0]


def run(ctx: RunContext) -> ExportResult:
    cfg = ctx.cfg.stage.export
    test = load_from_disk(str(ctx.require(ctx.layout.tokenized / "dataset", "tokenize")))["test"]
    model = ctx.deployable_model().eval().cpu()
    parity = test.select(range(min(cfg.n_parity_samples, len(test))))
    example = next(padded_batches(parity, ctx.tokenizer, 2))
    with atomic_dir(ctx.layout.export) as out:
        export_onnx(model, example, out / "model.onnx", cfg.opset)
        ctx.tokenizer.save_pretrained(str(out))
        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        reference = predict_logits(model, parity, ctx.tokenizer, len(parity))
        got = onnx_logits(session, next(padded_batches(parity, ctx.tokenizer, len(parity))))
        diff = float(np.abs(reference - got).max())
        if diff > cfg.atol:
            raise PipelineError(f"stage.export.atol: ONNX logits differ from PyTorch by {diff:.3g} > {cfg.atol}")
        logits = np.concatenate([onnx_logits(session, b) for b in padded_batches(test, ctx.tokenizer, cfg.batch_size)])
        accuracy = classification_metrics(logits.argmax(-1), np.asarray(test["labels"]), ctx.labels)["accuracy"]
        size_mb = (out / "model.onnx").stat().st_size / 2**20 + sum(
            p.stat().st_size for p in out.glob("*.data")
        ) / 2**20
        write_json(
            out / "export.json",
            {
                "max_abs_logit_diff": diff,
                "onnx_test_accuracy": accuracy,
                "size_mb": size_mb,
                "opset": cfg.opset,
            },
        )
    ctx.tracker.artifact(ctx.layout.export, "onnx")
    return ExportResult(max_abs_diff=diff, onnx_accuracy=accuracy, size_mb=size_mb)

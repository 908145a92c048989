"""export: deployable model -> ONNX (torch.onnx dynamo exporter), checked with onnxruntime on the test split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from datasets import Dataset
from torch import nn

from pipeline.atomic import atomic_dir, write_json
from pipeline.context import RunContext
from pipeline.errors import PipelineError
from pipeline.inference import MODEL_INPUTS, exact_fp32, length_order, padded_batches, predict_logits
from pipeline.results import StageResult
from pipeline.serving import log_served_model


@dataclass
class ExportResult(StageResult):
    """Per ONNX variant ("fp32", "int8"): max |logit diff| vs PyTorch, the task's test figures, size on disk."""

    variants: dict[str, dict[str, float]]
    headline: str | None = None  # the task's headline metric, whose int8 drop is reported
    skipped_reason: str | None = None

    def metrics(self) -> dict[str, float]:
        out = {f"{name}_{key}": v for name, figures in self.variants.items() for key, v in figures.items()}
        if self.headline and "int8" in self.variants:
            key = f"test_{self.headline}"
            out[f"int8_{self.headline}_drop_pts"] = 100.0 * (self.variants["fp32"][key] - self.variants["int8"][key])
        return out


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


def quantize_int8(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantization of the linear layers' weights, one scale per output channel."""
    from onnx.shape_inference import InferenceError
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    except InferenceError as exc:  # seen with onnxruntime 1.30 on the exported graph; 1.32 quantizes it
        raise PipelineError(
            f"stage.export.int8: onnxruntime {ort.__version__} cannot quantize this graph ({exc}); "
            "use onnxruntime>=1.32 or stage.export.int8=false"
        ) from exc


def check_variant(
    path: Path, reference: np.ndarray, parity: dict, test: Dataset, ctx: RunContext
) -> tuple[dict[str, float], np.ndarray]:
    """Run an ONNX file on the parity batch and the whole test split; return its figures and test predictions."""
    cfg = ctx.cfg.stage.export
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diff = float(np.abs(reference - onnx_logits(session, parity)).max())
    logits = np.concatenate([onnx_logits(session, b) for b in padded_batches(test, ctx.tokenizer, cfg.batch_size)])
    figures, predictions = ctx.task.export_figures(logits, test, ctx)
    size_mb = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20  # + external data
    return {"max_abs_logit_diff": diff, **figures, "size_mb": size_mb}, predictions


def run(ctx: RunContext) -> ExportResult:
    reason = ctx.method.export_skip_reason or ctx.task.export_skip_reason
    if reason:
        ctx.tracker.tags({"export.skipped": reason})
        return ExportResult(variants={}, skipped_reason=reason)
    cfg = ctx.cfg.stage.export
    test = ctx.dataset("tokenize")["test"]
    model = ctx.deployable_model().eval().cpu()
    parity_rows = test.select(range(min(cfg.n_parity_samples, len(test))))
    parity = next(padded_batches(parity_rows, ctx.tokenizer, len(parity_rows)))
    with exact_fp32():  # ONNX Runtime computes in IEEE fp32 on CPU
        reference = predict_logits(model, parity_rows, ctx.tokenizer, len(parity_rows))
    # Scored in length order, as predict and the served model batch: less padding, so faster. Dynamic int8 takes
    # each batch's activation range, so its figures here are those of the batching users get.
    test = test.select(length_order(test))
    with atomic_dir(ctx.layout.export) as out:
        export_onnx(model, next(padded_batches(parity_rows, ctx.tokenizer, 2)), out / "model.onnx", cfg.opset)
        fp32, fp32_predictions = check_variant(out / "model.onnx", reference, parity, test, ctx)
        variants = {"fp32": fp32}
        if fp32["max_abs_logit_diff"] > cfg.atol:
            diff = fp32["max_abs_logit_diff"]
            raise PipelineError(f"stage.export.atol: ONNX logits differ from PyTorch by {diff:.3g} > {cfg.atol}")
        if cfg.int8:
            quantize_int8(out / "model.onnx", out / "model.int8.onnx")
            int8, int8_predictions = check_variant(out / "model.int8.onnx", reference, parity, test, ctx)
            variants["int8"] = {**int8, "agreement_with_fp32": float(np.mean(int8_predictions == fp32_predictions))}
        ctx.tokenizer.save_pretrained(str(out))  # the folder is self-contained: model(s), tokenizer, task files
        ctx.task.write_export_info(ctx, out)
        write_json(
            out / "export.json",
            {
                "variants": variants,
                "opset": cfg.opset,
                "max_length": ctx.cfg.model.max_length,
                "task": ctx.task.name,
            },
        )
    tracking = ctx.cfg.tracking
    register_as = (tracking.model_name or tracking.experiment) if tracking.register else None
    ctx.tracker.tags({"model_uri": log_served_model(ctx.layout.export, ctx.task, register_as)})
    return ExportResult(variants=variants, headline=ctx.task.headline_metric)

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
from pipeline.inference import MODEL_INPUTS, exact_fp32, length_order, onnx_logits, padded_batches
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


class LogitsOnly(nn.Module):
    """Positional (input_ids, attention_mask) -> logits: the plain signature ONNX consumers expect.

    positions_from_mask: position ids counted over the attention mask, so a left-padded prompt (batched
    generation) gets the positions it has unpadded, in any position-embedding scheme.
    """

    def __init__(self, model: nn.Module, positions_from_mask: bool = False) -> None:
        super().__init__()
        self.model, self.positions_from_mask = model, positions_from_mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        kwargs = {}
        if self.positions_from_mask:
            kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            kwargs["use_cache"] = False
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits


def export_onnx(
    module: LogitsOnly, example: dict[str, torch.Tensor], path: Path, opset: int, optimize: bool = True
) -> None:
    """Export with dynamic batch and sequence axes. optimize=False skips onnxscript's graph optimizer (1.5 s here),
    but onnxruntime's dynamic int8 quantization then leaves the linear layers in fp32 (benchmarks/passes.py)."""
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    program = torch.onnx.export(
        module.cpu().eval(),
        (example["input_ids"], example["attention_mask"]),
        dynamo=True,
        verbose=False,
        opset_version=opset,
        input_names=MODEL_INPUTS,
        output_names=["logits"],
        dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
        optimize=optimize,
    )
    program.save(str(path))


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
    path: Path, reference: np.ndarray, parity: dict, test: Dataset, ctx: RunContext, tolerance: float | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """Run an ONNX file on the parity batch, then on the whole test split; return its figures and test predictions.

    With a tolerance, a parity difference above it stops the stage before the (slower) test-split scoring.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diff = np.abs(reference - onnx_logits(session, parity))
    if diff.ndim == 3:  # per-token logits (a language model): padded positions' logits are nobody's output
        diff = diff[parity["attention_mask"].numpy().astype(bool)]
    diff = float(diff.max())
    if tolerance is not None and diff > tolerance:
        cfg = ctx.cfg.stage.export
        raise PipelineError(
            f"stage.export.atol: ONNX logits differ from PyTorch by {diff:.3g} > {tolerance:.3g} "
            f"(atol {cfg.atol} + rtol {cfg.rtol} x the largest |logit|, {np.abs(reference).max():.3g})"
        )
    figures, predictions = ctx.task.export_figures(session, test, ctx)
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
    module = LogitsOnly(model, positions_from_mask=ctx.task.onnx_positions_from_mask)
    with exact_fp32(), torch.inference_mode():  # ONNX Runtime computes in IEEE fp32 on CPU
        reference = module(**parity).float().numpy()
    # Scored in length order, as predict and the served model batch: less padding, so faster. Dynamic int8 takes
    # each batch's activation range, so its figures here are those of the batching users get.
    test = test.select(length_order(test))
    with atomic_dir(ctx.layout.export) as out:
        export_onnx(module, next(padded_batches(parity_rows, ctx.tokenizer, 2)), out / "model.onnx", cfg.opset)
        tolerance = cfg.atol + cfg.rtol * float(np.abs(reference).max())  # numpy.allclose's rule, at the worst logit
        fp32, fp32_predictions = check_variant(out / "model.onnx", reference, parity, test, ctx, tolerance)
        variants = {"fp32": fp32}
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

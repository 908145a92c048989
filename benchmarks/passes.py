"""What one forward pass over the test split costs outside training, and what the ONNX export's optimizer buys.

On a finished run: a PyTorch pass of the merged model over the test split (length-sorted batches, as evaluate and
explore run them) at several batch sizes, with SDPA and eager attention; explore's embedding pass over the
validation split in fp32 and in bf16 (autocast; stage.explore.precision), with the class silhouette of each; then
`torch.onnx.export` with and without onnxscript's optimizer, dynamic int8 quantization of each export, and an
onnxruntime pass (batch 32, as export scores) with every resulting model, with its test accuracy and size.

    python benchmarks/passes.py RUN_DIR [--out benchmarks]
RUN_DIR is a pipeline run with tokenize and merge outputs, e.g. the offline reference run (classification).
Prints a Markdown table and writes passes.json and passes.md under --out.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import arguments, publish  # noqa: E402

from pipeline.context import RunLayout  # noqa: E402
from pipeline.inference import autocast, embed, length_order, onnx_logits, padded_batches, predict_logits  # noqa: E402
from pipeline.stages.export import LogitsOnly, export_onnx, quantize_int8  # noqa: E402

T = TypeVar("T")
BATCH_SIZES = (16, 32, 64)
ONNX_BATCH = 32
EMBED_BATCH = 64  # stage.explore.batch_size's default


def timed(work: Callable[[], T]) -> tuple[float, T]:
    """Seconds `work()` took, and its result."""
    start = time.perf_counter()
    out = work()
    return time.perf_counter() - start, out


def onnx_figures(path: Path, test: Any, tokenizer: Any, labels: np.ndarray) -> dict[str, float]:
    """Seconds for one onnxruntime pass over `test`, its accuracy, and the file's size."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    seconds, logits = timed(lambda: [onnx_logits(session, b) for b in padded_batches(test, tokenizer, ONNX_BATCH)])
    accuracy = float((np.concatenate(logits).argmax(-1) == labels).mean())
    size_mb = path.stat().st_size / 2**20
    return {"pass_s": round(seconds, 2), "accuracy": round(accuracy, 4), "size_mb": round(size_mb, 1)}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    from datasets import load_from_disk
    from sklearn.metrics import silhouette_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    layout = RunLayout(args.run_dir.resolve())
    tokenizer = AutoTokenizer.from_pretrained(str(layout.tokenized / "tokenizer"))
    test = load_from_disk(str(layout.tokenized / "dataset"), keep_in_memory=True)["test"]
    test = test.select(length_order(test))
    labels = np.asarray(test["labels"])
    results: dict[str, dict] = {"pytorch_pass_s": {}, "embedding": {}, "onnx": {}}
    for attention in ("sdpa", "eager"):
        model = AutoModelForSequenceClassification.from_pretrained(
            str(layout.merged_model), attn_implementation=attention
        ).eval()
        for batch_size in BATCH_SIZES:
            seconds, _ = timed(lambda: predict_logits(model, test, tokenizer, batch_size))  # noqa: B023
            results["pytorch_pass_s"][f"{attention}, batch {batch_size}"] = round(seconds, 2)
    validation = load_from_disk(str(layout.tokenized / "dataset"), keep_in_memory=True)["validation"]
    embedder = AutoModelForSequenceClassification.from_pretrained(str(layout.merged_model)).eval()  # SDPA
    for precision in ("fp32", "bf16"):
        with autocast(precision):
            seconds, vectors = timed(lambda: embed(embedder, validation, tokenizer, EMBED_BATCH, "mean"))
        silhouette = silhouette_score(vectors, np.asarray(validation["labels"]))
        results["embedding"][precision] = {"pass_s": round(seconds, 2), "silhouette": round(float(silhouette), 5)}
    module = LogitsOnly(model)
    example = next(padded_batches(test.select(range(32)), tokenizer, 2))
    work = Path(tempfile.mkdtemp(prefix="passes-"))
    for optimize in (True, False):
        fp32, int8 = work / f"optimize-{optimize}.onnx", work / f"optimize-{optimize}.int8.onnx"
        export_s, _ = timed(lambda: export_onnx(module, example, fp32, 18, optimize=optimize))  # noqa: B023
        quantize_s, error = timed(lambda: quantize_or_error(fp32, int8))  # noqa: B023
        results["onnx"][f"optimize={optimize}"] = {
            "export_s": round(export_s, 2),
            "quantize_s": round(quantize_s, 2),
            "quantize_error": error,
            "fp32": onnx_figures(fp32, test, tokenizer, labels),
            "int8": onnx_figures(int8, test, tokenizer, labels) if int8.exists() else None,
        }
    rows = [f"| PyTorch pass over {len(test)} test rows, {k} | {v} s |" for k, v in results["pytorch_pass_s"].items()]
    for precision, figures in results["embedding"].items():
        rows += [
            f"| explore's embedding pass over {len(validation)} validation rows, sdpa, {precision} "
            f"| {figures['pass_s']} s, class silhouette {figures['silhouette']} |"
        ]
    for name, figures in results["onnx"].items():
        int8 = figures["int8"] or {}
        failed = f" ({figures['quantize_error']})" if figures["quantize_error"] else ""
        rows += [
            f"| `torch.onnx.export`, {name} | {figures['export_s']} s |",
            f"| int8 quantization, {name} | {figures['quantize_s']} s{failed} |",
            f"| onnxruntime pass fp32 / int8, {name} | {figures['fp32']['pass_s']} / {int8.get('pass_s')} s |",
            f"| test accuracy fp32 / int8, {name} | {figures['fp32']['accuracy']} / {int8.get('accuracy')} |",
            f"| size MB fp32 / int8, {name} | {figures['fp32']['size_mb']} / {int8.get('size_mb')} |",
        ]
    table = "\n".join(["| pass (2 CPU cores, one run) | figure |", "|---|---|", *rows])
    publish(args.out, "passes", table, results)


def quantize_or_error(fp32: Path, int8: Path) -> str | None:
    """Quantize; None, or the error's first line if onnxruntime could not."""
    try:
        quantize_int8(fp32, int8)
    except Exception as exc:  # noqa: BLE001 - the figure to report is whether it works
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    return None


if __name__ == "__main__":
    main()

"""How far dynamic int8 ONNX strays from fp32, on every row of a run's split, and how batch order changes that.

Dynamic quantization takes each batch's activation range at run time, padding included, so the same model gives
different int8 predictions depending on which texts share a batch. This compares batches in file order (mixed
lengths, much padding) with batches in length order (what `pipeline.predict` and the served model do).

    python benchmarks/int8_agreement.py RUN_DIR [--batch-size 32] [--out benchmarks]
RUN_DIR is a pipeline run with split and export outputs, e.g. the offline reference run.
Prints a Markdown table and writes int8_agreement.json and int8_agreement.md under --out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from datasets import concatenate_datasets, load_from_disk

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import arguments, publish  # noqa: E402

from pipeline.tasks.classification import OnnxPredictor  # noqa: E402


def predictions(predictor: OnnxPredictor, texts: list[str], batch_size: int, by_length: bool) -> np.ndarray:
    """Predicted class per text, batching in file order or in length order."""
    order = np.argsort([len(t) for t in texts], kind="stable") if by_length else np.arange(len(texts))
    out = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        out[rows] = predictor.probabilities([texts[i] for i in rows]).argmax(-1)
    return out


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    split = load_from_disk(str(args.run_dir / "split" / "dataset"))
    rows = concatenate_datasets([split[name] for name in split])
    texts, labels = rows["text"], np.asarray(rows["label"])
    is_test = np.concatenate([np.full(len(split[name]), name == "test") for name in split])
    export = args.run_dir / "export"
    fp32, int8 = OnnxPredictor(export), OnnxPredictor(export, int8=True)
    results: dict = {"run_dir": str(args.run_dir), "rows": len(texts), "test_rows": int(is_test.sum())}
    lines = [
        "| batches | rows | fp32 accuracy | int8 accuracy | drop (pts) | int8 predictions that differ from fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for order in ("file order", "length order"):
        by_length = order == "length order"
        a = predictions(fp32, texts, args.batch_size, by_length)
        b = predictions(int8, texts, args.batch_size, by_length)
        for subset, mask in (("all", np.ones_like(is_test)), ("test", is_test)):
            acc_a, acc_b = float(np.mean(a[mask] == labels[mask])), float(np.mean(b[mask] == labels[mask]))
            flips = int(np.sum(a[mask] != b[mask]))
            results[f"{order}/{subset}"] = {"fp32_accuracy": acc_a, "int8_accuracy": acc_b, "flips": flips}
            lines.append(
                f"| {order} | {subset} ({int(mask.sum())}) | {acc_a:.4f} | {acc_b:.4f} | "
                f"{100 * (acc_a - acc_b):+.2f} | {flips} ({100 * flips / mask.sum():.2f}%) |"
            )
    publish(args.out, "int8_agreement", "\n".join(lines), results)


if __name__ == "__main__":
    main()

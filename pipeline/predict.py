"""Batch prediction from a CSV/TSV/JSONL/Parquet file with the ONNX (fp32 or int8) or PyTorch model.

    python -m pipeline.predict RUN_DIR_OR_MODEL_DIR texts.csv --output predictions.csv [--backend onnx]

Rows whose text is missing or empty get an `error` and no prediction; they never stop the batch.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax

from pipeline.atomic import read_json, write_bytes, write_text
from pipeline.data.files import read_table
from pipeline.errors import PipelineError

BACKENDS = ("onnx", "onnx-int8", "pytorch")


class Predictor(Protocol):
    labels: list[str]

    def probabilities(self, texts: list[str]) -> np.ndarray: ...


class OnnxPredictor:
    """An export directory: model.onnx / model.int8.onnx, tokenizer files, labels.json, export.json."""

    def __init__(self, export_dir: Path, int8: bool = False) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = export_dir / ("model.int8.onnx" if int8 else "model.onnx")
        if not path.is_file():
            raise PipelineError(f"model: {path} not found (run the export stage; int8 needs stage.export.int8=true)")
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(export_dir))
        self.labels = read_json(export_dir / "labels.json")
        self.max_length = int(read_json(export_dir / "export.json").get("max_length", 512))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="np")
        feed = {name: enc[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        return softmax(self.session.run(["logits"], feed)[0], axis=-1)


class TorchPredictor:
    """A transformers model directory (a merged model, or a fully fine-tuned one) with its tokenizer."""

    def __init__(self, model_dir: Path, max_length: int = 512) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self.max_length = max_length

    @torch.inference_mode()
    def probabilities(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        return torch.softmax(self.model(**enc).logits.float(), dim=-1).numpy()


def load_predictor(model: Path, backend: str) -> Predictor:
    """`model` is a run directory or the model directory itself."""
    if backend not in BACKENDS:
        raise PipelineError(f"--backend: {backend!r}; expected one of {list(BACKENDS)}")
    if not model.is_dir():
        raise PipelineError(f"model: directory {str(model)!r} not found (a run directory or a model directory)")
    if backend.startswith("onnx"):
        export_dir = model / "export" if (model / "export").is_dir() else model
        return OnnxPredictor(export_dir, int8=backend == "onnx-int8")
    for candidate in (model / "merge" / "model", model / "train" / "model", model):
        if (candidate / "config.json").is_file():
            return TorchPredictor(candidate)
    raise PipelineError(f"model: no transformers model (config.json) in {model}, its merge/model or train/model")


def predict_frame(predictor: Predictor, frame: pd.DataFrame, text_column: str, batch_size: int) -> pd.DataFrame:
    """The input rows plus `predicted`, one `prob_<label>` column per class, and `error` for bad rows."""
    if text_column not in frame.columns:
        raise PipelineError(f"--text-column: column {text_column!r} not in input (columns: {', '.join(frame.columns)})")
    texts = frame[text_column]
    valid = texts.map(lambda t: isinstance(t, str) and t.strip() != "").to_numpy()
    probs = np.full((len(frame), len(predictor.labels)), np.nan)
    rows = np.flatnonzero(valid)
    # Similar lengths per batch: less padding, so faster (the export stage scores int8 in the same order).
    rows = rows[np.argsort(texts.iloc[rows].str.len().to_numpy(), kind="stable")]
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        probs[batch] = predictor.probabilities([texts.iloc[i] for i in batch])
    out = frame.copy()
    out["predicted"] = [
        predictor.labels[int(p)] if ok else None for p, ok in zip(np.nan_to_num(probs).argmax(-1), valid, strict=True)
    ]
    for i, label in enumerate(predictor.labels):
        out[f"prob_{label}"] = probs[:, i]
    out["error"] = np.where(valid, "", f"empty or non-text {text_column}")
    return out


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Atomically write by extension: .csv, .jsonl or .parquet."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        write_text(path, frame.to_csv(index=False))
    elif suffix == ".jsonl":
        write_text(path, frame.to_json(orient="records", lines=True))
    elif suffix == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        write_bytes(path, buffer.getvalue())
    else:
        raise PipelineError(f"--output: unsupported file type {suffix!r}; expected .csv, .jsonl or .parquet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a run directory, an export directory or a model directory")
    parser.add_argument("input", type=Path, help=".csv, .tsv, .jsonl or .parquet with a text column")
    parser.add_argument("--output", type=Path, help="default: <input stem>.predictions.csv beside the input")
    parser.add_argument("--backend", default="onnx", choices=BACKENDS)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    output = args.output or args.input.with_name(f"{args.input.stem}.predictions.csv")
    try:
        predictor = load_predictor(args.model, args.backend)
        result = predict_frame(predictor, read_table(args.input, "input"), args.text_column, args.batch_size)
        write_table(result, output)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = result.index[result["error"] != ""].tolist()
    if bad:
        print(f"warning: {len(bad)} row(s) skipped for empty or non-text input (rows {bad[:10]})", file=sys.stderr)
    print(f"predicted {len(result) - len(bad)} of {len(result)} rows with {args.backend} -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

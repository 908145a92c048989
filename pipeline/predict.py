"""Batch prediction from a CSV/TSV/JSONL/Parquet file with the ONNX (fp32 or int8) or PyTorch model.

    python -m pipeline.predict RUN_DIR_OR_MODEL_DIR texts.csv --output predictions.csv [--backend onnx]

The run's task decides the output columns (classification: `predicted` and one `prob_<label>` per class).
Rows whose text is missing or empty get an `error` and no prediction; they never stop the batch.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.atomic import read_json, write_bytes, write_text
from pipeline.data.files import read_table
from pipeline.errors import PipelineError
from pipeline.process import skip_exit_collection
from pipeline.tasks import DEFAULT_TASK, Task, get_task

BACKENDS = ("onnx", "onnx-int8", "pytorch")


def task_of_dir(path: Path) -> Task:
    """The task that made a run, export or model directory, as its export.json or summary.json records it.

    Directories made before tasks were recorded are classification runs, the default task.
    """
    for folder in (path, *list(path.parents)[:3]):
        for name in ("export.json", "summary.json"):
            recorded = folder / name
            if recorded.is_file() and "task" in (info := read_json(recorded)):
                return get_task(info["task"])
    return get_task(DEFAULT_TASK)


def load_predictor(model: Path, backend: str) -> tuple[Task, Any]:
    """`model` is a run directory or the model directory itself; returns its task and a predictor over it."""
    if backend not in BACKENDS:
        raise PipelineError(f"--backend: {backend!r}; expected one of {list(BACKENDS)}")
    if not model.is_dir():
        raise PipelineError(f"model: directory {str(model)!r} not found (a run directory or a model directory)")
    if backend.startswith("onnx"):
        export_dir = model / "export" if (model / "export").is_dir() else model
        task = task_of_dir(export_dir)
        return task, task.predictor(export_dir, backend)
    for candidate in (model / "merge" / "model", model / "train" / "model", model):
        if (candidate / "config.json").is_file():
            task = task_of_dir(candidate)
            return task, task.predictor(candidate, backend)
    raise PipelineError(f"model: no transformers model (config.json) in {model}, its merge/model or train/model")


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


def positive_int(text: str) -> int:
    """argparse type for a count such as --batch-size: an integer of at least 1."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.predict", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a run directory, an export directory or a model directory")
    parser.add_argument("input", type=Path, help=".csv, .tsv, .jsonl or .parquet with a text column")
    parser.add_argument("--output", type=Path, help="default: <input stem>.predictions.csv beside the input")
    parser.add_argument("--backend", default="onnx", choices=BACKENDS)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    args = parser.parse_args(argv)
    output = args.output or args.input.with_name(f"{args.input.stem}.predictions.csv")
    try:
        task, predictor = load_predictor(args.model, args.backend)
        result = task.predict_frame(
            predictor, read_table(args.input, "input", blank_lines_are_rows=True), args.text_column, args.batch_size
        )
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
    skip_exit_collection()
    sys.exit(main())

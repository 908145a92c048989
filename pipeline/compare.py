"""Side-by-side comparison of the runs of one sweep: a table (Markdown + CSV) and accuracy vs trainable params.

Runs automatically at the end of a `--multirun` whose config lists `ComparisonCallback` in hydra.callbacks
(see conf/experiment/agnews_compare.yaml), or by hand: `python -m pipeline.compare SWEEP_DIR`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from pipeline.atomic import atomic_dir, read_json, write_text  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.tasks import DEFAULT_TASK, Task, get_task  # noqa: E402
from pipeline.tracking import open_experiment  # noqa: E402

# (column, stage, metric in that stage's summary entry); the task's test metrics come first (task_columns)
COLUMNS = [
    ("best_val_metric", "train", "best_val_metric"),
    ("trainable_method", "train", "params_trainable_method"),
    ("trainable_head", "train", "params_trainable_head"),
    ("trainable_pct", "train", "params_trainable_pct"),
    ("total_params", "train", "params_total"),
    ("train_wall_s", "train", "wall_s"),
    ("samples_per_s", "train", "samples_per_s"),
    ("peak_memory_mb", "train", "peak_memory_mb"),
    ("saved_mb", "train", "saved_mb"),
    ("merge_max_diff", "merge", "max_abs_logit_diff"),
]
COMPARISON_DIR = "comparison"


def task_columns(task: Task) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """The task's test metrics (headline first) and its exported models' headline figures, as COLUMNS entries."""
    test = [(f"test_{m}", "evaluate", f"test_{m}") for m in task.comparison_metrics]
    onnx = [
        (f"onnx_{v}_{task.headline_metric}", "export", f"{v}_test_{task.headline_metric}") for v in ("fp32", "int8")
    ]
    return test, onnx


def sweep_task(sweep_dir: Path) -> Task:
    """The task the sweep's runs ran (their summaries record it; runs made before tasks did: the default)."""
    first = next(iter(sorted(sweep_dir.glob("*/summary.json"))), None)
    return get_task(read_json(first).get("task", DEFAULT_TASK) if first else DEFAULT_TASK)


def collect(sweep_dir: Path, task: Task | None = None) -> pd.DataFrame:
    """One row per run directory under `sweep_dir`; a run without a summary is listed as failed.

    Rows are sorted by the task's headline test metric (default: the sweep's task), best first.
    """
    task = task or sweep_task(sweep_dir)
    test_columns, onnx_columns = task_columns(task)
    columns_spec = [*test_columns, *COLUMNS, *onnx_columns]
    rows: list[dict[str, Any]] = []
    for run_dir in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name != COMPARISON_DIR), key=_job_num):
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            error = run_dir / "error.txt"
            reason = error.read_text().strip() if error.exists() else "no summary.json (crashed or still running)"
            rows.append({"method": _method_of(run_dir), "status": "failed", "note": reason, "run_dir": run_dir.name})
            continue
        summary = read_json(summary_path)
        stages = summary["stages"]
        row: dict[str, Any] = {"method": summary.get("method", _method_of(run_dir)), "status": "ok"}
        for column, stage, metric in columns_spec:
            row[column] = stages.get(stage, {}).get(metric)
        row["note"] = "; ".join(f"{stage}: {why}" for stage, why in summary.get("skipped", {}).items())
        row["run_dir"] = run_dir.name
        row["mlflow_run_id"] = summary.get("mlflow_run_id")
        rows.append(row)
    if not rows:
        raise PipelineError(f"sweep_dir: no run directories under {sweep_dir}")
    columns = ["method", "status", *(c for c, _, _ in columns_spec), "note", "run_dir", "mlflow_run_id"]
    frame = pd.DataFrame(rows).reindex(columns=columns)  # every column, even when every run failed
    headline = test_columns[0][0]
    return frame.sort_values(headline, ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def _job_num(path: Path) -> tuple[int, str]:
    head = path.name.split("_", 1)[0]
    return (int(head), path.name) if head.isdigit() else (sys.maxsize, path.name)


def _method_of(run_dir: Path) -> str:
    config = run_dir / ".hydra" / "config.yaml"
    if config.exists():
        return str(OmegaConf.load(config).method.name)
    return run_dir.name.split("_", 1)[-1]


def to_markdown(frame: pd.DataFrame) -> str:
    """The table as GitHub Markdown; parameter counts with thousands separators, ratios to 3-4 digits."""
    shown = frame.drop(columns=[c for c in ("mlflow_run_id", "run_dir") if c in frame])
    formatters = {
        "trainable_method": "{:,.0f}",
        "trainable_head": "{:,.0f}",
        "total_params": "{:,.0f}",
        "trainable_pct": "{:.3f}",
        "train_wall_s": "{:.0f}",
        "samples_per_s": "{:.1f}",
        "peak_memory_mb": "{:.0f}",
        "saved_mb": "{:.2f}",
        "merge_max_diff": "{:.1e}",
    }
    cells = shown.copy().astype(object)
    for column in shown.columns:
        fmt = formatters.get(column, "{:.4f}")
        cells[column] = [
            fmt.format(v) if isinstance(v, (int, float)) and not pd.isna(v) else ("" if pd.isna(v) else str(v))
            for v in shown[column]
        ]
    header = "| " + " | ".join(cells.columns) + " |\n|" + "---|" * len(cells.columns) + "\n"
    return header + "".join("| " + " | ".join(row) + " |\n" for row in cells.itertuples(index=False))


def plot(frame: pd.DataFrame, path: Path, headline: str) -> None:
    """The headline test metric against trainable parameters (log x), one labelled point per method."""
    column = f"test_{headline}"
    done = frame[frame["status"] == "ok"].dropna(subset=[column])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    trainable = done["trainable_method"].fillna(0) + done["trainable_head"].fillna(0)
    ax.scatter(trainable, done[column], s=30)
    for x, y, name in zip(trainable, done[column], done["method"], strict=True):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (method + head; log scale)")
    ax.set_ylabel(f"test {headline.replace('_', ' ')}")
    ax.set_title(f"{headline.replace('_', ' ').capitalize()} vs trainable parameters, same split and seed")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(sweep_dir: Path, tracking_cfg: Any | None = None) -> Path:
    """Write comparison/{comparison.md,comparison.csv,<headline>_vs_params.png} under the sweep; log them to MLflow.

    The headline is the task's (classification: accuracy_vs_params.png).
    """
    task = sweep_task(sweep_dir)
    frame = collect(sweep_dir, task)
    headline = task.headline_metric
    out_dir = sweep_dir / COMPARISON_DIR
    with atomic_dir(out_dir) as out:
        frame.to_csv(out / "comparison.csv", index=False)
        write_text(out / "comparison.md", to_markdown(frame))
        plot(frame, out / f"{headline}_vs_params.png", headline)
    if tracking_cfg is not None:
        client, experiment_id = open_experiment(tracking_cfg)
        mlflow.set_tracking_uri(client.tracking_uri)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"comparison-{sweep_dir.name}"):
            mlflow.set_tags({"kind": "comparison", "sweep_dir": str(sweep_dir)})
            mlflow.log_artifacts(str(out_dir), artifact_path=COMPARISON_DIR)
    return out_dir


class ComparisonCallback(Callback):
    """Hydra callback: build the comparison once every run of the multirun has finished."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        out = compare(Path(config.hydra.sweep.dir), config)
        print(f"comparison: {out / 'comparison.md'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (outputs/multiruns/<experiment>/<time>)")
    args = parser.parse_args(argv)
    try:
        if not args.sweep_dir.is_dir():
            raise PipelineError(f"sweep_dir: {args.sweep_dir} is not a directory")
        configs = sorted(args.sweep_dir.glob("*/.hydra/config.yaml"))  # where the sweep's runs were tracked
        out = compare(args.sweep_dir, OmegaConf.load(configs[0]) if configs else None)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((out / "comparison.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

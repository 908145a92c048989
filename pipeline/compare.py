"""Side-by-side comparison of the runs of one sweep: a table (Markdown + CSV) and accuracy vs trainable params.

Runs automatically at the end of a `--multirun` whose config lists `ComparisonCallback` in hydra.callbacks
(see conf/experiment/agnews_compare.yaml), or by hand: `python -m pipeline.compare SWEEP_DIR`.
"""

from __future__ import annotations

import argparse
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from pipeline.atomic import atomic_dir, read_json, write_text  # noqa: E402
from pipeline.bootstrap import LEVEL, RESAMPLES, interval, paired_p_value, resample_index  # noqa: E402
from pipeline.context import RunLayout  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.process import skip_exit_collection  # noqa: E402
from pipeline.tasks import DEFAULT_TASK, Task, get_task  # noqa: E402
from pipeline.tracking import open_experiment  # noqa: E402

SIGNIFICANCE = 0.05  # the reading under the table calls a difference to the best run significant below this p

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
RUN_FILES = (".hydra", "summary.json", "error.txt")  # a run directory holds one of these (Hydra writes .hydra first)
RUNS_FILE = "runs.txt"  # in comparison/ when it compares chosen runs of the sweep (a study's best), one per line


def task_columns(task: Task) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """The task's test metrics (headline first) and its exported models' headline figures, as COLUMNS entries."""
    test = [(f"test_{m}", "evaluate", f"test_{m}") for m in task.comparison_metrics]
    onnx = [
        (f"onnx_{v}_{task.headline_metric}", "export", f"{v}_test_{task.headline_metric}") for v in ("fp32", "int8")
    ]
    return test, onnx


def sweep_task(run_dirs: list[Path]) -> Task:
    """The task the runs ran (their summaries record it; runs made before tasks did: the default)."""
    first = next((d / "summary.json" for d in run_dirs if (d / "summary.json").exists()), None)
    return get_task(read_json(first).get("task", DEFAULT_TASK) if first else DEFAULT_TASK)


def runs_of(sweep_dir: Path, run_dirs: list[Path] | None = None) -> tuple[list[Path], bool]:
    """The run directories to compare and whether they were chosen: `run_dirs`, else those an earlier comparison
    of chosen runs listed in its runs.txt, else every run directory of the sweep, in job order."""
    if run_dirs is not None:
        return [Path(d) for d in run_dirs], True
    listed = sweep_dir / COMPARISON_DIR / RUNS_FILE
    if listed.exists():
        return [sweep_dir / line for line in listed.read_text().splitlines() if line], True
    if not sweep_dir.is_dir():
        raise PipelineError(f"sweep_dir: {sweep_dir} is not a directory")
    every = (p for p in sweep_dir.iterdir() if p.is_dir() and any((p / f).exists() for f in RUN_FILES))
    return sorted(every, key=_job_num), False


def collect(sweep_dir: Path, task: Task | None = None, run_dirs: list[Path] | None = None) -> pd.DataFrame:
    """One row per run directory under `sweep_dir` (or per one of `run_dirs`); a run without a summary is listed
    as failed. Rows are sorted by the task's headline test metric (default: the runs' task), best first.
    """
    run_dirs = runs_of(sweep_dir, run_dirs)[0]
    task = task or sweep_task(run_dirs)
    test_columns, onnx_columns = task_columns(task)
    columns_spec = [*test_columns, *COLUMNS, *onnx_columns]
    rows: list[dict[str, Any]] = []
    for run_dir in run_dirs:
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            error = run_dir / "error.txt"
            reason = error.read_text().strip() if error.exists() else "no summary.json (crashed or still running)"
            rows.append(
                {"method": _method_of(run_dir), "status": "failed", "note": reason, "run_dir": _rel(run_dir, sweep_dir)}
            )
            continue
        summary = read_json(summary_path)
        stages = summary["stages"]
        row: dict[str, Any] = {"method": summary.get("method", _method_of(run_dir)), "status": "ok"}
        for column, stage, metric in columns_spec:
            row[column] = stages.get(stage, {}).get(metric)
        row["note"] = "; ".join(f"{stage}: {why}" for stage, why in summary.get("skipped", {}).items())
        row["seed"], row["setting"] = _seed_and_setting(run_dir)
        row["run_dir"] = _rel(run_dir, sweep_dir)
        row["mlflow_run_id"] = summary.get("mlflow_run_id")
        rows.append(row)
    if not rows:
        raise PipelineError(f"sweep_dir: no run directories under {sweep_dir}")
    bounds = [f"{c}_{end}" for c, _, _ in test_columns for end in ("low", "high")]
    columns = ["method", "status", *(c for c, _, _ in columns_spec), *bounds, "p_vs_best"]
    columns += ["note", "seed", "setting", "run_dir", "mlflow_run_id"]
    frame = pd.DataFrame(rows).reindex(columns=columns)  # every column, even when every run failed
    frame["setting"] = _varying(frame["setting"])
    headline = test_columns[0][0]
    frame = frame.sort_values(headline, ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return add_intervals(frame, sweep_dir, task)


def _rel(run_dir: Path, sweep_dir: Path) -> str:
    """The run directory relative to the sweep's (its name, for a run of the sweep)."""
    return (
        str(run_dir.resolve().relative_to(sweep_dir.resolve()))
        if run_dir.resolve().is_relative_to(sweep_dir.resolve())
        else str(run_dir.resolve())
    )


# Overrides that do not change what a run trains: left out of its setting, so seeds of one setting group together
NOT_SETTING = ("seed=", "hydra.", "trial.", "stages=", "paths.", "tracking.")


def _seed_and_setting(run_dir: Path) -> tuple[int | None, str]:
    """The run's seed, and its overrides but the seed: runs of one setting under several seeds share them."""
    hydra_dir = run_dir / ".hydra"
    if not (hydra_dir / "config.yaml").exists():
        return None, ""
    overrides = OmegaConf.load(hydra_dir / "overrides.yaml") if (hydra_dir / "overrides.yaml").exists() else []
    setting = " ".join(str(o) for o in overrides if not str(o).startswith(NOT_SETTING))
    return int(OmegaConf.load(hydra_dir / "config.yaml").seed), setting


def _varying(settings: pd.Series) -> pd.Series:
    """Each setting without the overrides every run shares (the sweep's command line): what tells runs apart."""
    tokens = [str(s).split() if isinstance(s, str) else [] for s in settings]
    common = set.intersection(*(set(t) for t in tokens if t)) if any(tokens) else set()
    return pd.Series([" ".join(t for t in ts if t not in common) for ts in tokens], index=settings.index)


def add_intervals(
    frame: pd.DataFrame, sweep_dir: Path, task: Task, resamples: int = RESAMPLES, level: float = LEVEL
) -> pd.DataFrame:
    """Fill each run's `level` bootstrap interval per test metric, and `p_vs_best`: the paired bootstrap p-value
    of its headline difference to the best run, for runs scored on the same test rows (other seeds drew other rows).
    """
    groups: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {}
    for position, run in frame[frame["status"] == "ok"].iterrows():
        layout = RunLayout(sweep_dir / run["run_dir"])
        rows_path, report_path = layout.test_rows, layout.split / "report.json"
        if rows_path.exists() and report_path.exists():  # runs evaluated before test_rows.npz existed have neither
            test_rows = read_json(report_path)["index_sha256"]["test"]
            with np.load(rows_path) as saved:
                groups.setdefault(test_rows, []).append((position, dict(saved)))
    best = min((position for members in groups.values() for position, _ in members), default=None)  # sorted frame
    for members in groups.values():
        n_rows = max(len(v) for v in members[0][1].values() if v.ndim)
        index = resample_index(n_rows, resamples)
        samples = {position: task.resampled_metrics(rows, index) for position, rows in members}
        for position, metrics in samples.items():
            for metric in task.comparison_metrics:
                low, high = interval(metrics[metric], level)
                frame.loc[position, [f"test_{metric}_low", f"test_{metric}_high"]] = [low, high]
        if best in samples:  # only runs on the best run's test rows can be paired with it
            for position, metrics in samples.items():
                if position != best:
                    difference = samples[best][task.headline_metric] - metrics[task.headline_metric]
                    frame.loc[position, "p_vs_best"] = paired_p_value(difference)
    return frame


def _job_num(path: Path) -> tuple[int, str]:
    head = path.name.split("_", 1)[0]
    return (int(head), path.name) if head.isdigit() else (sys.maxsize, path.name)


def _method_of(run_dir: Path) -> str:
    config = run_dir / ".hydra" / "config.yaml"
    if config.exists():
        return str(OmegaConf.load(config).method.name)
    return run_dir.name.split("_", 1)[-1]


# The columns of the short table an MLflow run's description shows (the full one is its comparison.md artifact)
SHORT = ("method", "status", "test_*", "p_vs_best", "trainable_pct", "saved_mb", "note", "seed")


def to_markdown(frame: pd.DataFrame, short: bool = False) -> str:
    """The table as GitHub Markdown: test metrics with their intervals, parameter counts with thousands separators;
    `short`: only the SHORT columns. Seed and setting columns appear only when they vary between runs.
    """
    hidden = [c for c in frame if c in ("mlflow_run_id", "run_dir") or c.endswith(("_low", "_high"))]
    if short:
        hidden += [c for c in frame if not any(fnmatch(c, pattern) for pattern in SHORT)]
    shown = frame.drop(columns=list(dict.fromkeys(hidden)))
    shown = shown.drop(columns=[c for c in ("seed", "setting") if c in shown and frame[c].nunique(dropna=True) < 2])
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
        "seed": "{:.0f}",
    }
    cells = shown.copy().astype(object)
    for column in shown.columns:
        fmt = formatters.get(column, "{:.4f}")
        cells[column] = [_cell(v, fmt) for v in shown[column]]
        if f"{column}_low" in frame:  # "0.8882 [0.8658, 0.9105]"
            cells[column] = [
                f"{cell} [{low:.4f}, {high:.4f}]" if not pd.isna(low) else cell
                for cell, low, high in zip(cells[column], frame[f"{column}_low"], frame[f"{column}_high"], strict=True)
            ]
    cells["p_vs_best"] = ["" if pd.isna(p) else ("<0.001" if p < 0.001 else f"{p:.3f}") for p in shown["p_vs_best"]]
    header = "| " + " | ".join(cells.columns) + " |\n|" + "---|" * len(cells.columns) + "\n"
    return header + "".join("| " + " | ".join(row) + " |\n" for row in cells.itertuples(index=False))


def _cell(value: Any, fmt: str) -> str:
    if isinstance(value, (int, float)) and not pd.isna(value):
        return fmt.format(value)
    return "" if pd.isna(value) else str(value)


def reading(frame: pd.DataFrame, task: Task, level: float = LEVEL) -> str:
    """What the table supports, from the intervals and paired tests rather than the point estimates."""
    metric = task.headline_metric
    column = f"test_{metric}"
    done = frame[(frame["status"] == "ok") & frame[column].notna()]
    if done.empty:
        return "No run has a test score."
    best, with_seed = done.iloc[0], done["seed"].nunique() > 1
    lines = [
        f"Best by test {metric}: {_label(best, with_seed)}, {best[column]:.4f}"
        + (
            f" ({level:.0%} interval {best[f'{column}_low']:.4f} to {best[f'{column}_high']:.4f})."
            if not pd.isna(best[f"{column}_low"])
            else "."
        )
    ]
    tested = done.iloc[1:].dropna(subset=["p_vs_best"])
    tied = [_label(r, with_seed) for _, r in tested.iterrows() if r["p_vs_best"] >= SIGNIFICANCE]
    worse = [_label(r, with_seed) for _, r in tested.iterrows() if r["p_vs_best"] < SIGNIFICANCE]
    if tied:
        lines.append(
            f"Not distinguishable from it (paired bootstrap, p >= {SIGNIFICANCE}): {', '.join(tied)}; their order "
            "in the table is not evidence."
        )
    if worse:
        lines.append(f"Worse than it (p < {SIGNIFICANCE}): {', '.join(worse)}.")
    untested = len(done) - 1 - len(tested)
    if untested:
        lines.append(
            f"{untested} run(s) have no per-row test scores or were scored on other test rows (another seed), "
            "so are not tested against it."
        )
    return " ".join(lines)


def _label(run: pd.Series, with_seed: bool) -> str:
    """The run's method, and its seed where the table holds several."""
    return f"{run['method']} (seed {int(run['seed'])})" if with_seed and not pd.isna(run["seed"]) else run["method"]


def across_seeds(frame: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Mean and sample standard deviation of each test metric over the seeds of every setting run more than once."""
    done = frame[frame["status"] == "ok"]
    columns = [f"test_{m}" for m in task.comparison_metrics]
    grouped = done.groupby(["method", "setting"], sort=False)[columns]
    table = grouped.agg(["mean", "std"])
    table.columns = [f"{c}_{stat}" for c, stat in table.columns]
    table.insert(0, "n_seeds", grouped.size())
    table = table[table["n_seeds"] > 1].reset_index()
    return table.sort_values(f"{columns[0]}_mean", ascending=False, kind="stable").reset_index(drop=True)


def seeds_markdown(table: pd.DataFrame, task: Task) -> str:
    """The across-seeds table as Markdown, "mean ± sd" per metric."""
    header = ["method", "setting", "n_seeds", *(f"test_{m}" for m in task.comparison_metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        values = [f"{row[f'test_{m}_mean']:.4f} ± {row[f'test_{m}_std']:.4f}" for m in task.comparison_metrics]
        lines.append("| " + " | ".join([row["method"], row["setting"], str(row["n_seeds"]), *values]) + " |")
    return "\n".join(lines) + "\n"


def plot(frame: pd.DataFrame, path: Path, headline: str) -> None:
    """The headline test metric (with its interval) against trainable parameters (log x), one point per run."""
    column = f"test_{headline}"
    done = frame[frame["status"] == "ok"].dropna(subset=[column])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    trainable = done["trainable_method"].fillna(0) + done["trainable_head"].fillna(0)
    low, high = done[f"{column}_low"], done[f"{column}_high"]
    errors = np.vstack([(done[column] - low).fillna(0), (high - done[column]).fillna(0)])
    ax.errorbar(trainable, done[column], yerr=errors, fmt="o", markersize=5, capsize=3, elinewidth=1)
    several_seeds = done["seed"].nunique() > 1
    for x, y, (_, run) in zip(trainable, done[column], done.iterrows(), strict=True):
        ax.annotate(_label(run, several_seeds), (x, y), textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (method + head; log scale)")
    ax.set_ylabel(f"test {headline.replace('_', ' ')}")
    split = "seeds as labelled" if several_seeds else "same split and seed"
    name = headline.replace("_", " ").capitalize()
    ax.set_title(f"{name} vs trainable parameters\n({split}, {LEVEL:.0%} intervals)")  # one line overflows 7.5 in
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(sweep_dir: Path, tracking_cfg: Any | None = None, run_dirs: list[Path] | None = None) -> Path:
    """Write comparison/{comparison.md,comparison.csv,<headline>_vs_params.png} (and seeds.csv when a setting ran
    under several seeds) under the sweep; log them to MLflow as the parent run of the compared runs.

    The runs are the sweep's, or `run_dirs` (listed in comparison/runs.txt, so a rebuild compares the same ones).
    The headline is the task's (classification: accuracy_vs_params.png).
    """
    run_dirs, chosen = runs_of(sweep_dir, run_dirs)
    task = sweep_task(run_dirs)
    frame = collect(sweep_dir, task, run_dirs)
    headline = task.headline_metric
    seeds = across_seeds(frame, task)
    text = reading(frame, task)
    by_seed = "" if seeds.empty else "\nAcross seeds (mean ± sample sd):\n\n" + seeds_markdown(seeds, task)
    markdown = to_markdown(frame) + "\n" + text + "\n" + by_seed
    # the MLflow description: the reading first, then the short table (a wide one does not fit the run page)
    description = text + "\n\n" + to_markdown(frame, short=True) + by_seed
    out_dir = sweep_dir / COMPARISON_DIR
    with atomic_dir(out_dir) as out:
        frame.to_csv(out / "comparison.csv", index=False)
        if not seeds.empty:
            seeds.to_csv(out / "seeds.csv", index=False)
        write_text(out / "comparison.md", markdown)
        if chosen:
            write_text(out / RUNS_FILE, "".join(f"{d}\n" for d in frame["run_dir"]))
        plot(frame, out / f"{headline}_vs_params.png", headline)
    if tracking_cfg is not None:
        run_ids = set(frame["mlflow_run_id"].dropna()) if chosen else None
        log_comparison(sweep_dir, out_dir, description, tracking_cfg, run_ids)
    return out_dir


def log_comparison(
    sweep_dir: Path, out_dir: Path, markdown: str, tracking_cfg: Any, run_ids: set[str] | None = None
) -> str:
    """Put the comparison on the parent run of the compared runs (`run_ids`, else the sweep's) and return its id.

    An Optuna study already has one (its trials' parent); a plain multirun gets a comparison run, reused when the
    table is rebuilt, and the sweep's runs (failed ones too) become its children.
    """
    client, experiment_id = open_experiment(tracking_cfg)
    prefix = f"{sweep_dir.resolve()}/"
    like = prefix.replace("'", "_")  # `_` matches any one character; the exact prefix is checked below
    runs = [
        run
        for run in client.search_runs([experiment_id], f"tags.run_dir LIKE '{like}%'", max_results=5000)
        if run.data.tags.get("run_dir", "").startswith(prefix) and (run_ids is None or run.info.run_id in run_ids)
    ]
    parents = {run.data.tags.get("mlflow.parentRunId") for run in runs}
    existing = [
        run
        for run in client.search_runs([experiment_id], "tags.kind = 'comparison'", max_results=1000)
        if run.data.tags.get("sweep_dir") == str(sweep_dir.resolve())
    ]
    if len(parents) == 1 and None not in parents and not existing:
        parent = parents.pop()  # the study's run
    else:
        parent = (
            existing[0].info.run_id
            if existing
            else client.create_run(
                experiment_id,
                run_name=f"comparison {sweep_dir.parent.name}/{sweep_dir.name}",
                tags={"kind": "comparison", "sweep_dir": str(sweep_dir.resolve())},
            ).info.run_id
        )
        for run in runs:
            client.set_tag(run.info.run_id, "mlflow.parentRunId", parent)
        client.set_terminated(parent, "FINISHED")
    client.set_tag(parent, "mlflow.note.content", markdown)
    client.log_artifacts(parent, str(out_dir), artifact_path=COMPARISON_DIR)
    return parent


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
    skip_exit_collection()
    sys.exit(main())

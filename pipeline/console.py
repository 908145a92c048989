"""What a run prints: one line per stage as it starts and ends, formatted training logs, a closing summary, and the
libraries' noise filtered at its source (warnings that say nothing about the user's run), real warnings kept."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger("pipeline")

# (category, message regex) of warnings raised inside libraries about their own internals, never about the run.
NOISE_WARNINGS = (
    (UserWarning, r"The specified dataset source can be interpreted in multiple ways"),  # MLflow's own two sources
    (UserWarning, r"Hint: Inferred schema contains integer column"),  # MLflow model signature: ids are ints by design
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),  # transformers calls its own deprecated name
    (FutureWarning, r"Specifying null_placement in SortOptions is deprecated"),  # datasets' sort inside pyarrow
    (UserWarning, r"n_jobs value 1 overridden to 1 by setting random_state"),  # UMAP: we seed it on purpose
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)`"),  # torch.onnx's exporter calling a deprecated torch API
    (UserWarning, r"# The axis name: .* will not be used"),  # torch.onnx merging our batch/sequence axes
    # Optuna on the sweeper's own calls: ExperimentalWarnings, and heartbeats outside study.optimize (on purpose)
    (Warning, r".* is experimental \(supported from v"),
    (Warning, r"Argument ``\w+`` is an experimental feature"),
    (UserWarning, r"Heartbeat of storage is supposed to be used with Study.optimize"),
    (UserWarning, r"Attempting to set identical low and high ylims"),  # a one-value parameter in Optuna's plot
)
# Loggers whose INFO/WARNING lines are about the library itself: table creation, input-example checks, the
# cloudpickle notice for our own pyfunc class, exporter registration of torchvision ops we do not use.
NOISY_LOGGERS = (
    *("mlflow.store", "mlflow.pyfunc", "mlflow.models"),
    *("torch.onnx", "torch.export", "onnx_ir", "onnxscript"),
    "absl",  # rouge-score's chatter
)


class _DropOnnxQuantizationChatter(logging.Filter):
    """onnxruntime's quantizer logs one INFO line per tensor on the root logger; keep its errors only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


def quiet_libraries() -> None:
    """Turn off per-call progress bars and load reports, and the warnings listed above, where they are raised.

    datasets is first imported by the split stage, so its bars are turned off through the variable it reads at
    import (the user's own setting wins); importing it here would cost start-up for no stage.
    """
    import transformers

    quiet_warnings()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    else:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" per model load
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DropOnnxQuantizationChatter) for f in handler.filters):
            handler.addFilter(_DropOnnxQuantizationChatter())


def quiet_warnings() -> None:
    """The warnings and logger chatter listed above, filtered; importing nothing (the sweeper calls it too)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for category, message in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def figure(v: Any) -> str:
    """A number as a reader wants it: 4 significant digits, scientific only when tiny."""
    if not isinstance(v, float):  # ints (step counts, sizes) and anything else as they are
        return str(v)
    return f"{v:.2e}" if v and abs(v) < 1e-3 else f"{v:.4g}"


# A loop's bar appears once it has run this long: short loops (small subsets, tests) print nothing.
PROGRESS_DELAY_S = 2.0


def batch_slices(total: int, batch_size: int, desc: str | None) -> Iterator[slice]:
    """Slices of `batch_size` rows over `total` rows, each counted on a bar named `desc` once the caller is done with
    it (no bar when `desc` is None). The bar shows once the loop has run PROGRESS_DELAY_S, clears when it ends (the
    stage's closing line follows); tqdm's own TQDM_DISABLE=1 hides it."""
    from tqdm import tqdm

    bar = tqdm(
        total=total, desc=desc, unit="rows", delay=PROGRESS_DELAY_S, leave=False, dynamic_ncols=True, disable=not desc
    )
    with bar:
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            yield slice(start, stop)
            bar.update(stop - start)


# Trainer log keys that restate timing the stage line already gives.
_TIMING = re.compile(r"(runtime|per_second|total_flos)$")


def format_logs(logs: Mapping[str, Any], step: int, max_steps: int) -> str:
    """One Trainer log dict as a line: `validation @ step 13/50: loss 1.204, accuracy 0.675, f1_macro 0.5956`."""
    shown = {k: v for k, v in logs.items() if not _TIMING.search(k) and k != "epoch"}
    if any(k.startswith("eval_") for k in shown):
        head, shown = "validation", {k.removeprefix("eval_"): v for k, v in shown.items()}
    elif "train_loss" in shown:
        head, shown = "training done", {"mean loss": shown["train_loss"]}
    else:
        head = "train"
    epoch = f" (epoch {logs['epoch']:.2f})" if isinstance(logs.get("epoch"), (int, float)) else ""
    body = ", ".join(f"{k} {figure(v)}" for k, v in shown.items())
    return f"{head} @ step {step}/{max_steps}{epoch}: {body}"


# Per stage, the metric names (regexes, in order) its closing line shows; the rest are in summary.json and MLflow.
STAGE_HEADLINES: dict[str, tuple[str, ...]] = {
    "split": (r"^(train|validation|test)_size$",),
    "tokenize": (r"^tokens_mean$", r"^tokens_truncated_pct$"),
    "train": (r"^steps$", r"^samples_per_s$", r"^tokens_per_s$", r"^best_val_metric$", r"^params_trainable_pct$"),
    "explore": (r"silhouette$",),
    "evaluate": (r"^test_(accuracy|f1_macro|rougeL|exact_match)$",),
    "errors": (r"^error_rate$", r"^mean_"),
    "merge": (r"^max_abs_logit_diff$",),
    "export": (r"test_(accuracy|rougeL)$", r"size_mb$"),
}


def stage_line(stage: str, metrics: Mapping[str, Any], skipped: str | None, limit: int = 5) -> str:
    """`train: done in 176 s: steps 380, samples_per_s 38, ...`, or why it was skipped, or that it came from cache."""
    if skipped:
        return f"{stage}: skipped ({skipped})"
    found = dict.fromkeys(k for pattern in STAGE_HEADLINES.get(stage, ()) for k in metrics if re.search(pattern, k))
    shown = ", ".join(f"{k} {figure(metrics[k])}" for k in list(found)[:limit])
    cached = " (from cache)" if metrics.get("cache_hit") == 1 else ""
    return f"{stage}: done in {metrics['wall_s']:.1f} s{cached}" + (f": {shown}" if shown else "")


def before_after(evaluate: Mapping[str, Any], metric: str) -> str | None:
    """`test accuracy 0.221 -> 0.888` from the evaluate stage's base and trained scores, when both are there."""
    before, after = evaluate.get(f"base_test_{metric}"), evaluate.get(f"test_{metric}")
    if after is None:
        return None
    return f"test {metric} " + (f"{figure(before)} -> " if before is not None else "") + figure(after)


def ui_link(tracking_uri: str, experiment_id: str, run_id: str, port: int = 5000) -> str:
    """Where the run opens in the MLflow UI: the server itself, or `make ui`'s address for a local store."""
    if tracking_uri.startswith("http"):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    ui = "make ui" if tracking_uri.endswith("/outputs/mlflow.db") else f"mlflow ui --backend-store-uri {tracking_uri}"
    return f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{run_id}  (start the UI with: {ui})"

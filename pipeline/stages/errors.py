"""errors: test logits -> per-sample loss ranking, most confident mistakes, confusion matrix plot."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from datasets import load_from_disk  # noqa: E402
from scipy.special import log_softmax  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix  # noqa: E402

from pipeline.atomic import atomic_dir  # noqa: E402
from pipeline.context import RunContext  # noqa: E402


@dataclass
class ErrorsResult:
    n_test: int
    n_errors: int
    mean_loss: float

    def metrics(self) -> dict[str, float]:
        return {
            "n_errors": float(self.n_errors),
            "error_rate": self.n_errors / max(self.n_test, 1),
            "mean_loss": self.mean_loss,
        }


def rank_samples(texts: list[str], labels: np.ndarray, logits: np.ndarray, names: list[str]) -> pd.DataFrame:
    """One row per test sample with its cross-entropy loss, sorted from worst to best."""
    logp = log_softmax(logits.astype(np.float64), axis=-1)
    pred = logits.argmax(-1)
    frame = pd.DataFrame(
        {
            "test_row": np.arange(len(texts)),
            "text": texts,
            "label": [names[i] for i in labels],
            "predicted": [names[i] for i in pred],
            "confidence": np.exp(logp.max(-1)),
            "loss": -logp[np.arange(len(labels)), labels],
        }
    )
    return frame.sort_values("loss", ascending=False, kind="stable").reset_index(drop=True)


def run(ctx: RunContext) -> ErrorsResult:
    logits = np.load(ctx.require(ctx.layout.evaluate / "test_logits.npy", "evaluate"))
    test = load_from_disk(str(ctx.require(ctx.layout.split / "dataset", "split")))["test"]
    labels = np.asarray(test["label"])
    ranked = rank_samples(test["text"], labels, logits, ctx.labels)
    mistakes = ranked[ranked["label"] != ranked["predicted"]]
    confident = mistakes.sort_values("confidence", ascending=False, kind="stable").head(ctx.cfg.stage.errors.top_k)
    with atomic_dir(ctx.layout.errors) as out:
        ranked.to_csv(out / "per_sample_loss.csv", index=False)
        confident.to_csv(out / "confident_mistakes.csv", index=False)
        matrix = confusion_matrix(labels, logits.argmax(-1), labels=list(range(len(ctx.labels))))
        fig, ax = plt.subplots(figsize=(1.2 * len(ctx.labels) + 3, 1.2 * len(ctx.labels) + 2.5))
        ConfusionMatrixDisplay(matrix, display_labels=ctx.labels).plot(ax=ax, xticks_rotation=45, colorbar=False)
        fig.tight_layout()
        fig.savefig(out / "confusion_matrix.png", dpi=110)
        plt.close(fig)
    for name in ("confident_mistakes.csv", "confusion_matrix.png"):
        ctx.tracker.artifact(ctx.layout.errors / name, "errors")
    return ErrorsResult(n_test=len(ranked), n_errors=len(mistakes), mean_loss=float(ranked["loss"].mean()))

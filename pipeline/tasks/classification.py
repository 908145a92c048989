"""Text classification: a text in, one of the data's classes out (a sequence-classification head, peft SEQ_CLS).

The task owns the class list (split/labels.json, copied into the export), the head, accuracy/macro-F1 with a
per-class report, the loss-ranked error table with a confusion matrix, and class probabilities in predictions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.atomic import read_json, write_json
from pipeline.console import batch_slices
from pipeline.data import CLASSIFICATION_FIELDS, LABEL, TEXT, RawData, label_list, label_name
from pipeline.data.splits import carve_splits
from pipeline.errors import PipelineError
from pipeline.results import StageResult
from pipeline.tasks import Task, TaskConfig, register_task

if TYPE_CHECKING:  # pandas (~0.3 s) loads where a frame is built, not when configs register
    import pandas as pd
    from datasets import Dataset
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from pipeline.context import RunContext

LABELS_FILE = "labels.json"  # class names, index = label id; in the split and in every export


@dataclass
class ClassificationConfig(TaskConfig):
    name: str = "classification"


def make_splits(raw: RawData, labels: list[str], data_cfg: Any, seed: int) -> dict[str, pd.DataFrame]:
    """The source's rows with a `label_id` column, carved into train/validation/test stratified by it."""
    index = {name: i for i, name in enumerate(labels)}
    frames = {
        name: frame.assign(label_id=frame[LABEL].map(label_name).map(index)) for name, frame in raw.frames.items()
    }
    return carve_splits(frames, data_cfg, seed, stratify_by="label_id")


def load_classifier(model_cfg: Any, labels: list[str], seed: int, **kwargs: Any) -> nn.Module:
    """Pretrained encoder plus a new classification head, seeded so every stage gets the same head.

    kwargs go to `from_pretrained` (e.g. a quantization_config).
    """
    import transformers
    from transformers import AutoModelForSequenceClassification

    from pipeline.models import load_pretrained

    transformers.set_seed(seed)
    return load_pretrained(
        AutoModelForSequenceClassification,
        model_cfg,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        ignore_mismatched_sizes=True,  # a checkpoint's own head (other label count) is replaced, not fatal
        **kwargs,
    )


def labels_of(ctx: RunContext) -> list[str]:
    """Class names, index = label id, as the split stage fixed them."""
    return read_json(ctx.require(ctx.layout.split / LABELS_FILE, "split"))


def metrics_of(predictions: np.ndarray, references: Any, labels: list[str]) -> dict[str, Any]:
    from pipeline.metrics import classification_metrics

    return classification_metrics(predictions, np.asarray(references), labels)


@dataclass
class ErrorsResult(StageResult):
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
    import pandas as pd
    from scipy.special import log_softmax

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


def plot_confusion(labels: np.ndarray, predictions: np.ndarray, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    matrix = confusion_matrix(labels, predictions, labels=list(range(len(names))))
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 3, 1.2 * len(names) + 2.5))
    ConfusionMatrixDisplay(matrix, display_labels=names).plot(ax=ax, xticks_rotation=45, colorbar=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
        self.labels = read_json(export_dir / LABELS_FILE)
        self.max_length = int(read_json(export_dir / "export.json").get("max_length", 512))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        from scipy.special import softmax

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

    def probabilities(self, texts: list[str]) -> np.ndarray:
        import torch

        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        with torch.inference_mode():
            return torch.softmax(self.model(**enc).logits.float(), dim=-1).numpy()


def predict_frame(predictor: Any, frame: pd.DataFrame, text_column: str, batch_size: int) -> pd.DataFrame:
    """The input rows plus `predicted`, one `prob_<label>` column per class, and `error` for bad rows."""
    if text_column not in frame.columns:
        raise PipelineError(f"--text-column: column {text_column!r} not in input (columns: {', '.join(frame.columns)})")
    texts = frame[text_column]
    valid = texts.map(lambda t: isinstance(t, str) and t.strip() != "").to_numpy()
    probs = np.full((len(frame), len(predictor.labels)), np.nan)
    rows = np.flatnonzero(valid)
    # Similar lengths per batch: less padding, so faster (the export stage scores int8 in the same order).
    rows = rows[np.argsort(texts.iloc[rows].str.len().to_numpy(), kind="stable")]
    for batch in batch_slices(len(rows), batch_size, "predicting"):
        probs[rows[batch]] = predictor.probabilities([texts.iloc[i] for i in rows[batch]])
    out = frame.copy()
    out["predicted"] = [
        predictor.labels[int(p)] if ok else None for p, ok in zip(np.nan_to_num(probs).argmax(-1), valid, strict=True)
    ]
    for i, label in enumerate(predictor.labels):
        out[f"prob_{label}"] = probs[:, i]
    out["error"] = np.where(valid, "", f"empty or non-text {text_column}")
    return out


@register_task
class Classification(Task):
    name = "classification"
    config_cls = ClassificationConfig
    peft_task_type = "SEQ_CLS"
    headline_metric = "accuracy"
    offline_model = "minilm"
    comparison_metrics = ("accuracy", "f1_macro")
    target_column = LABEL
    served_model_name = "classifier"
    data_fields = CLASSIFICATION_FIELDS
    selection_metric = "f1_macro"
    validation_metrics = ("f1_macro", "accuracy", "precision_macro", "recall_macro")
    adds_head = True

    def auto_class(self) -> type:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def load_model(self, ctx: RunContext, **kwargs: Any) -> nn.Module:
        return load_classifier(ctx.cfg.model, labels_of(ctx), ctx.cfg.seed, **kwargs)

    def skeleton(self, model_cfg: Any) -> nn.Module:
        import torch

        from pipeline.models import load_config

        config = load_config(model_cfg, num_labels=2)  # the head's width does not change what can apply
        with torch.device("meta"):
            return self.auto_class().from_config(config)

    def split(self, raw: RawData, cfg: Any) -> dict[str, pd.DataFrame]:
        splits = make_splits(raw, label_list(raw), cfg.data, cfg.seed)
        return {
            name: frame[[TEXT, "label_id", "origin", "source_row"]].rename(columns={"label_id": LABEL})
            for name, frame in splits.items()
        }

    def describe_split(
        self, raw: RawData, splits: dict[str, pd.DataFrame], out: Path
    ) -> tuple[dict[str, Any], list[str]]:
        labels = label_list(raw)
        write_json(out / LABELS_FILE, labels)
        counts = {s: dict(Counter(labels[i] for i in frame[LABEL])) for s, frame in splits.items()}
        return {"class_counts": counts}, [LABELS_FILE]

    def split_params(self, ctx: RunContext) -> dict[str, Any]:
        return {"data.labels": labels_of(ctx)}

    def tokenize(self, batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, cfg: Any) -> tuple[dict, list[int]]:
        max_length = cfg.model.max_length
        full_lengths = [len(ids) for ids in tokenizer(batch[TEXT], truncation=False)["input_ids"]]
        enc = tokenizer(batch[TEXT], truncation=True, max_length=max_length)
        return {**enc, "labels": batch[LABEL], "length": [len(ids) for ids in enc["input_ids"]]}, full_lengths

    def collator(self, tokenizer: PreTrainedTokenizerBase, padding: str, max_length: int) -> Any:
        """Pad each batch to its longest row (dynamic), or every row to max_length."""
        from transformers import DataCollatorWithPadding

        if padding == "max_length":
            return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
        return DataCollatorWithPadding(tokenizer)

    def outputs(self, model: nn.Module, dataset: Dataset, ctx: RunContext, batch_size: int) -> np.ndarray:
        from pipeline.inference import predict_logits

        return predict_logits(model, dataset, ctx.tokenizer, batch_size)

    def score(self, outputs: np.ndarray, dataset: Dataset, ctx: RunContext) -> dict[str, Any]:
        return metrics_of(outputs.argmax(-1), dataset["labels"], labels_of(ctx))

    def row_values(self, outputs: np.ndarray, dataset: Dataset, ctx: RunContext) -> dict[str, np.ndarray]:
        return {
            "reference": np.asarray(dataset["labels"], dtype=np.int64),
            "predicted": outputs.argmax(-1).astype(np.int64),
            "n_classes": np.asarray(len(labels_of(ctx))),
        }

    def resampled_metrics(self, rows: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
        """Accuracy and macro-F1 over every class (absent ones count 0, as `score`'s sklearn call does)."""
        reference, predicted = rows["reference"][index], rows["predicted"][index]
        f1 = np.zeros(len(index))
        for c in range(int(rows["n_classes"])):
            true_c, pred_c = reference == c, predicted == c
            both = 2.0 * (true_c & pred_c).sum(1)
            seen = true_c.sum(1) + pred_c.sum(1)
            f1 += np.divide(both, seen, out=np.zeros(len(index)), where=seen > 0)
        return {"accuracy": (reference == predicted).mean(1), "f1_macro": f1 / int(rows["n_classes"])}

    def trainer_metrics(self, ctx: RunContext) -> Any:
        from pipeline.metrics import scalar_metrics

        labels = labels_of(ctx)

        def compute(pred: Any) -> dict[str, float]:
            logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
            return scalar_metrics(metrics_of(np.argmax(logits, -1), pred.label_ids, labels))

        return compute

    def write_evaluation(self, base: dict[str, Any], trained: dict[str, Any] | None, out: Path) -> list[str]:
        import pandas as pd

        per_class = pd.DataFrame(base["per_class"]).add_prefix("base_").rename(columns={"base_label": "label"})
        if trained is not None:
            per_class = per_class.merge(pd.DataFrame(trained["per_class"]), on="label")
        per_class.to_csv(out / "per_class.csv", index=False)
        return ["per_class.csv"]

    def errors(self, outputs: np.ndarray, rows: Dataset, ctx: RunContext, out: Path) -> tuple[ErrorsResult, list[str]]:
        names = labels_of(ctx)
        labels = np.asarray(rows[LABEL])
        ranked = rank_samples(rows[TEXT], labels, outputs, names)
        mistakes = ranked[ranked["label"] != ranked["predicted"]]
        top_k = ctx.cfg.stage.errors.top_k
        confident = mistakes.sort_values("confidence", ascending=False, kind="stable").head(top_k)
        ranked.to_csv(out / "per_sample_loss.csv", index=False)
        confident.to_csv(out / "confident_mistakes.csv", index=False)
        plot_confusion(labels, outputs.argmax(-1), names, out / "confusion_matrix.png")
        result = ErrorsResult(n_test=len(ranked), n_errors=len(mistakes), mean_loss=float(ranked["loss"].mean()))
        return result, ["confident_mistakes.csv", "confusion_matrix.png"]

    def explore_groups(self, rows: Dataset, ctx: RunContext) -> tuple[np.ndarray, list[str]] | None:
        return np.asarray(rows["labels"]), labels_of(ctx)

    def export_figures(self, session: Any, rows: Dataset, ctx: RunContext) -> tuple[dict[str, float], Any]:
        from pipeline.inference import onnx_logits, padded_batches

        batches = padded_batches(rows, ctx.tokenizer, ctx.cfg.stage.export.batch_size, "ONNX logits")
        predictions = np.concatenate([onnx_logits(session, batch) for batch in batches]).argmax(-1)
        headline = metrics_of(predictions, rows["labels"], labels_of(ctx))[self.headline_metric]
        return {f"test_{self.headline_metric}": headline}, predictions

    def write_export_info(self, ctx: RunContext, out: Path) -> None:
        write_json(out / LABELS_FILE, labels_of(ctx))

    def predictor(self, model_dir: Path, backend: str) -> OnnxPredictor | TorchPredictor:
        if backend.startswith("onnx"):
            return OnnxPredictor(model_dir, int8=backend == "onnx-int8")
        return TorchPredictor(model_dir)

    def predict_frame(self, predictor: Any, frame: pd.DataFrame, text_column: str, batch_size: int) -> pd.DataFrame:
        return predict_frame(predictor, frame, text_column, batch_size)

    def serving_example(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {"text": ["Stocks rallied after the central bank held rates.", "The striker scored twice."]}
        )

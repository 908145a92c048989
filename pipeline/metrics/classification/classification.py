"""Accuracy, macro precision/recall/F1 and a per-class report, as an `evaluate` metric that loads offline.

`evaluate.load("accuracy")` fetches its script from the Hub; this module is loaded by path instead.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

_DESCRIPTION = "Accuracy, macro-averaged precision/recall/F1, and per-class precision/recall/F1/support."
_KWARGS = "predictions: list of int; references: list of int; label_names: optional list of str."


class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, label_names=None):
        n_labels = len(label_names) if label_names else max(max(predictions), max(references)) + 1
        ids = list(range(n_labels))
        p, r, f, _ = precision_recall_fscore_support(
            references, predictions, labels=ids, average="macro", zero_division=0
        )
        pc, rc, fc, sc = precision_recall_fscore_support(
            references, predictions, labels=ids, average=None, zero_division=0
        )
        names = label_names or [str(i) for i in ids]
        per_class = [
            {
                "label": names[i],
                "precision": float(pc[i]),
                "recall": float(rc[i]),
                "f1": float(fc[i]),
                "support": int(sc[i]),
            }
            for i in ids
        ]
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "precision_macro": float(p),
            "recall_macro": float(r),
            "f1_macro": float(f),
            "per_class": per_class,
        }

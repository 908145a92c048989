"""ROUGE-1/2/L (F-measure, stemmed) and exact match, as an `evaluate` metric that loads offline.

`evaluate.load("rouge")` fetches its script from the Hub; this module wraps Google's `rouge-score` package (the
scorer behind it) and is loaded by path instead. Per-row scores come back too, to rank the worst generations.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "Mean ROUGE-1/2/L F-measure (Porter-stemmed) and exact match (case- and space-insensitive)."
_KWARGS = "predictions: list of str; references: list of str."
_ROUGE = ("rouge1", "rouge2", "rougeL")


def normalise(text):
    return " ".join(str(text).casefold().split())


class Generation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin (2004), ROUGE: A Package for Automatic Evaluation of Summaries.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        scorer = rouge_scorer.RougeScorer(list(_ROUGE), use_stemmer=True)
        rows = [scorer.score(ref, pred) for pred, ref in zip(predictions, references, strict=True)]
        per_row = {name: [float(row[name].fmeasure) for row in rows] for name in _ROUGE}
        per_row["exact_match"] = [
            float(normalise(p) == normalise(r)) for p, r in zip(predictions, references, strict=True)
        ]
        n = max(len(rows), 1)
        return {**{name: sum(values) / n for name, values in per_row.items()}, "per_row": per_row}

"""TF-IDF + logistic regression (scikit-learn): the baseline every fine-tuning method has to beat."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.atomic import write_bytes
from pipeline.errors import PipelineError
from pipeline.methods import Baseline, MethodConfig, TextsAndLabels, register_method
from pipeline.ranges import at_least, positive

if TYPE_CHECKING:
    import numpy as np
    from sklearn.pipeline import Pipeline

MODEL_FILE = "tfidf_lr.pkl"


@dataclass
class TfidfLrMethodConfig(MethodConfig):
    name: str = "tfidf_lr"
    max_features: int | None = positive(100_000)
    ngram_max: int = at_least(1, 2)  # word n-grams 1..ngram_max
    min_df: int = at_least(1, 1)
    sublinear_tf: bool = True
    c_grid: list[float] = field(default_factory=lambda: [0.3, 1.0, 3.0, 10.0, 30.0])  # inverse L2 strength,
    # picked by validation macro-F1, as the neural methods pick their best checkpoint


@register_method
class TfidfLogisticRegression(Baseline):
    name = "tfidf_lr"
    config_cls = TfidfLrMethodConfig
    export_skip_reason = "a scikit-learn pipeline has no ONNX exporter in this stack (skl2onnx is not a dependency)"

    def fit(self, train: TextsAndLabels, validation: TextsAndLabels, cfg: Any, seed: int) -> tuple[Pipeline, float]:
        if not cfg.c_grid:
            raise PipelineError("method.c_grid: needs at least one value")
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score
        from sklearn.pipeline import Pipeline

        vectorizer = TfidfVectorizer(
            max_features=cfg.max_features,
            ngram_range=(1, cfg.ngram_max),
            min_df=cfg.min_df,
            sublinear_tf=cfg.sublinear_tf,
        )
        features = vectorizer.fit_transform(train[0])
        val_features = vectorizer.transform(validation[0])
        best: tuple[float, LogisticRegression] | None = None
        for c in cfg.c_grid:
            lr = LogisticRegression(C=float(c), max_iter=2000, random_state=seed).fit(features, train[1])
            score = f1_score(validation[1], lr.predict(val_features), average="macro")
            if best is None or score > best[0]:
                best = (score, lr)
        assert best is not None  # c_grid is not empty (checked above)
        return Pipeline([("tfidf", vectorizer), ("lr", best[1])]), float(best[0])

    def n_parameters(self, fitted: Pipeline) -> int:
        lr = fitted.named_steps["lr"]
        return int(lr.coef_.size + lr.intercept_.size)

    def save(self, fitted: Pipeline, path: Path) -> None:
        write_bytes(path / MODEL_FILE, pickle.dumps(fitted))

    def logits(self, path: Path, texts: list[str]) -> np.ndarray:
        import numpy as np

        with open(path / MODEL_FILE, "rb") as f:
            fitted = pickle.load(f)  # noqa: S301 (our own training output, never user input)
        return fitted.predict_log_proba(texts).astype(np.float32)

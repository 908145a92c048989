"""The exported classifier as an MLflow pyfunc model: loadable with mlflow.pyfunc and servable by MLflow."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.models import infer_signature

from pipeline.predict import OnnxPredictor, predict_frame

INPUT_EXAMPLE = pd.DataFrame(
    {"text": ["Stocks rallied after the central bank held rates.", "The striker scored twice."]}
)


class OnnxTextClassifier(mlflow.pyfunc.PythonModel):
    """DataFrame with a `text` column in; `predicted`, `prob_<label>` and `error` columns out."""

    def load_context(self, context: Any) -> None:
        self.predictor = OnnxPredictor(Path(context.artifacts["export_dir"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = predict_frame(self.predictor, pd.DataFrame(model_input), "text", batch_size=32)
        return frame.drop(columns=["text"])


def log_classifier(export_dir: Path, register_as: str | None) -> str:
    """Log the export directory as a pyfunc model on the active run (and register it); returns its URI."""
    example_output = predict_frame(OnnxPredictor(export_dir), INPUT_EXAMPLE, "text", 32).drop(columns=["text"])
    info = mlflow.pyfunc.log_model(
        name="classifier",
        python_model=OnnxTextClassifier(),
        artifacts={"export_dir": str(export_dir)},
        code_paths=[str(Path(__file__).resolve().parent)],  # the `pipeline` package, for OnnxPredictor
        signature=infer_signature(INPUT_EXAMPLE, example_output),
        input_example=INPUT_EXAMPLE,
        pip_requirements=[
            f"{name}=={version(name)}"
            for name in ("mlflow", "onnxruntime", "transformers", "tokenizers", "pandas", "numpy", "scipy", "torch")
        ],
        registered_model_name=register_as,
    )
    return info.model_uri

"""The exported model as an MLflow pyfunc model: loadable with mlflow.pyfunc and servable by MLflow.

The task decides what it takes and returns (classification: a `text` column in; `predicted`, `prob_<label>`
and `error` columns out).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.models import infer_signature

from pipeline.tasks import DEFAULT_TASK, Task, get_task

BATCH_SIZE = 32


class OnnxTaskModel(mlflow.pyfunc.PythonModel):
    """The export directory's ONNX model behind the task's `predict_frame`."""

    task_name = DEFAULT_TASK  # models logged before tasks were recorded are classifiers

    def __init__(self, task: str) -> None:
        self.task_name = task

    def load_context(self, context: Any) -> None:
        self.task = get_task(self.task_name)
        self.predictor = self.task.predictor(Path(context.artifacts["export_dir"]), "onnx")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = self.task.predict_frame(self.predictor, pd.DataFrame(model_input), "text", BATCH_SIZE)
        return frame.drop(columns=["text"])


OnnxTextClassifier = OnnxTaskModel  # the name models logged before the task seam were pickled under


def log_served_model(export_dir: Path, task: Task, register_as: str | None) -> str:
    """Log the export directory as a pyfunc model on the active run (and register it); returns its URI."""
    example = task.serving_example()
    predictor = task.predictor(export_dir, "onnx")
    example_output = task.predict_frame(predictor, example, "text", BATCH_SIZE).drop(columns=["text"])
    info = mlflow.pyfunc.log_model(
        name=task.served_model_name,
        python_model=OnnxTaskModel(task.name),
        artifacts={"export_dir": str(export_dir)},
        code_paths=[str(Path(__file__).resolve().parent)],  # the `pipeline` package, for the task's predictor
        signature=infer_signature(example, example_output),
        input_example=example,
        pip_requirements=[
            f"{name}=={version(name)}"
            for name in ("mlflow", "onnxruntime", "transformers", "tokenizers", "pandas", "numpy", "scipy", "torch")
        ],
        registered_model_name=register_as,
    )
    return info.model_uri

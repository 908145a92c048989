"""Task registry: a task says which head the model gets, how rows become model inputs, and how outputs are scored.

Stages, methods and CLIs ask the run's task (`ctx.task`) and never name a task themselves. Adding a task means
adding one module in this package (decorated with `@register_task`) and one YAML file in conf/task/.
Modules here import torch, transformers and peft inside the functions that use them, so registering the
configs (`python -m pipeline --help`) stays fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omegaconf import MISSING

from pipeline.errors import PipelineError
from pipeline.registry import Registry

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pandas as pd
    from datasets import Dataset
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from pipeline.context import RunContext
    from pipeline.data import RawData
    from pipeline.results import StageResult


@dataclass
class TaskConfig:
    """Fields every task config has; a task with knobs subclasses it."""

    name: str = MISSING


class Task(ABC):
    """Everything that differs between tasks; the Trainer loop, the stages and the methods are shared."""

    name: ClassVar[str]
    config_cls: ClassVar[type[TaskConfig]]
    peft_task_type: ClassVar[str]  # a peft TaskType value; every peft method puts it in its config
    headline_metric: ClassVar[str]  # the test metric comparisons rank by (evaluate logs it as test_<name>)
    comparison_metrics: ClassVar[tuple[str, ...]]  # test metrics in comparison tables, the headline first
    target_column: ClassVar[str]  # the split's column holding what the model learns to predict
    served_model_name: ClassVar[str]  # name of the MLflow logged model the export stage writes
    data_fields: ClassVar[tuple[str, ...]]  # data.<field>_column names every source must have (data.load_raw)
    selection_metric: ClassVar[str]  # the validation metric train.metric_for_best_model defaults to
    validation_metrics: ClassVar[tuple[str, ...]]  # what periodic validation reports (and "loss")
    adds_head: ClassVar[bool]  # whether the model gets a new, randomly initialised head (counted apart)
    export_skip_reason: ClassVar[str | None] = None  # None: `export` writes an ONNX model
    onnx_positions_from_mask: ClassVar[bool] = False  # the exported forward counts positions over the mask
    offline_model: ClassVar[str | None] = None  # a conf/model option that loads without the Hub, for its hints
    # The model's loss averages over label tokens the Trainer counts for it (num_items_in_batch); under DDP the count
    # must then span all ranks. False: a mean over the rank's own rows (classification), which DDP averages right.
    token_level_loss: ClassVar[bool] = False
    # stage.explore.pooling values that mean nothing for the task's models, each with the reason its error gives
    pooling_faults: ClassVar[dict[str, str]] = {}

    # --- model -------------------------------------------------------------------------------------
    @abstractmethod
    def auto_class(self) -> type:
        """The transformers Auto class that puts this task's head on a pretrained model."""

    def owns(self, model: nn.Module) -> bool:
        """Whether `model` (a transformers model, not yet wrapped) has this task's head."""
        # transformers has no public "which Auto class built this model"; its Auto classes keep the
        # config -> model class table (with user-registered models) as `_model_mapping`.
        from transformers.models.auto.auto_factory import _get_model_class

        mapping = self.auto_class()._model_mapping
        return type(model.config) in mapping and isinstance(model, _get_model_class(model.config, mapping))

    @abstractmethod
    def load_model(self, ctx: RunContext, **kwargs: Any) -> nn.Module:
        """The pretrained model with this task's head, seeded so every stage gets the same new weights.

        kwargs go to `from_pretrained` (e.g. a method's quantization_config).
        """

    @abstractmethod
    def skeleton(self, model_cfg: Any) -> nn.Module:
        """The architecture `model_cfg` names on the meta device (no weights read), for checks before any work."""

    def load_saved(self, path: Path) -> nn.Module:
        """A plain transformers model this task's stages saved (merged, or fully fine-tuned)."""
        return self.auto_class().from_pretrained(str(path))

    # --- data --------------------------------------------------------------------------------------
    @abstractmethod
    def split(self, raw: RawData, cfg: Any) -> dict[str, pd.DataFrame]:
        """Seeded (cfg.seed) train/validation/test frames with `text`, `origin`, `source_row` and the task's columns."""

    @abstractmethod
    def describe_split(
        self, raw: RawData, splits: dict[str, pd.DataFrame], out: Path
    ) -> tuple[dict[str, Any], list[str]]:
        """Write the task's files beside the split (classification: labels.json).

        Returns report.json entries (classification: class counts) and the names of the files written, to log.
        """

    @abstractmethod
    def split_params(self, ctx: RunContext) -> dict[str, Any]:
        """MLflow params describing the split (classification: the class names)."""

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase, task_cfg: Any = None) -> PreTrainedTokenizerBase:
        """The model's tokenizer as this task uses it (saved by the tokenize stage; e.g. a pad token added)."""
        return tokenizer

    @abstractmethod
    def tokenize(self, batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, cfg: Any) -> tuple[dict, list[int]]:
        """A batch of split rows -> (model inputs, `labels` and `length` (tokens kept), untruncated lengths)."""

    @abstractmethod
    def collator(self, tokenizer: PreTrainedTokenizerBase, padding: str, max_length: int) -> Any:
        """The data collator that pads training and validation batches."""

    # --- metrics, decoding, errors -----------------------------------------------------------------
    @abstractmethod
    def outputs(self, model: nn.Module, dataset: Dataset, ctx: RunContext, batch_size: int) -> np.ndarray:
        """The model's outputs on tokenized rows (classification: logits), in dataset order."""

    @abstractmethod
    def score(self, outputs: np.ndarray, dataset: Dataset, ctx: RunContext) -> dict[str, Any]:
        """Metrics of outputs against the rows' references: floats, plus any per-group detail."""

    @abstractmethod
    def trainer_metrics(self, ctx: RunContext) -> Any:
        """The Trainer's `compute_metrics` for periodic validation (its names are train.metric_for_best_model's);
        None to compute the loss only."""

    def validation_scorer(self, ctx: RunContext, rows: Dataset) -> Callable[[nn.Module], dict[str, float]] | None:
        """Metrics periodic validation computes from the model itself (generation), beside `trainer_metrics`."""
        return None

    def embed(self, model: nn.Module, rows: Dataset, ctx: RunContext) -> np.ndarray:
        """One vector per tokenized row from the model's last hidden layer, pooled as stage.explore.pooling says."""
        from pipeline.config import value
        from pipeline.inference import embed

        cfg = ctx.cfg.stage.explore
        return embed(model, rows, ctx.tokenizer, cfg.batch_size, value(cfg.pooling))

    def check_pooling(self, pooling: str) -> None:
        """Before any stage runs: a stage.explore.pooling the task's models give meaning to, or a PipelineError."""
        from pipeline.config import Pooling

        if pooling in self.pooling_faults:
            usable = [p.value for p in Pooling if p.value not in self.pooling_faults]
            raise PipelineError(
                f"stage.explore.pooling: {pooling} does not suit task {self.name} ({self.pooling_faults[pooling]}); "
                f"expected one of {usable}"
            )

    def parity_logits(self, model: nn.Module, rows: Dataset, ctx: RunContext) -> np.ndarray:
        """The logits `merge` compares before and after folding the adapter in, for tokenized rows."""
        from pipeline.inference import predict_logits

        return predict_logits(model, rows, ctx.tokenizer, len(rows))

    @abstractmethod
    def row_values(self, outputs: np.ndarray, dataset: Dataset, ctx: RunContext) -> dict[str, np.ndarray]:
        """What `resampled_metrics` needs of each test row (classification: reference and predicted class ids);
        evaluate saves it so comparisons can resample the test rows."""

    @abstractmethod
    def resampled_metrics(self, rows: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
        """Each comparison metric on resamples of the rows: `index` (resamples x rows) -> one value per resample.

        `index = np.arange(n)[None]` gives the point estimate, equal to `score`'s.
        """

    @abstractmethod
    def write_evaluation(self, base: dict[str, Any], trained: dict[str, Any] | None, out: Path) -> list[str]:
        """Write the evaluation's readable reports into `out`; return the file names to log."""

    @abstractmethod
    def errors(self, outputs: np.ndarray, rows: Dataset, ctx: RunContext, out: Path) -> tuple[StageResult, list[str]]:
        """Rank the test split's rows worst first and write what the errors stage shows into `out`.

        Returns the stage's result and the names of the files to log to MLflow.
        """

    @abstractmethod
    def explore_groups(self, rows: Dataset, ctx: RunContext) -> tuple[np.ndarray, list[str]] | None:
        """Group id per tokenized row and group names, to colour the embedding plot; None if there are none."""

    # --- export, predict, serving ------------------------------------------------------------------
    @abstractmethod
    def export_figures(self, session: Any, rows: Dataset, ctx: RunContext) -> tuple[dict[str, float], Any]:
        """An exported model's (onnxruntime session's) `test_<headline_metric>` and any other figures on tokenized
        rows, and its decoded predictions (to compare variants)."""

    @abstractmethod
    def write_export_info(self, ctx: RunContext, out: Path) -> None:
        """What a predictor needs beside the model files in an export directory (classification: labels.json)."""

    @abstractmethod
    def predictor(self, model_dir: Path, backend: str) -> Any:
        """A predictor over an export directory (backend onnx, onnx-int8) or a transformers model directory."""

    @abstractmethod
    def predict_frame(self, predictor: Any, frame: pd.DataFrame, text_column: str, batch_size: int) -> pd.DataFrame:
        """The input rows plus the task's prediction columns and an `error` column for rows that cannot run."""

    @abstractmethod
    def serving_example(self) -> pd.DataFrame:
        """An input example for the MLflow model's signature."""


_TASKS: Registry[Task] = Registry("task", __name__, __path__)
register_task = _TASKS.register  # class decorator: make a task available under `cls.name`
DEFAULT_TASK = "classification"  # the task of runs and exports made before tasks were a choice


def registered_tasks() -> list[Task]:
    """Every registered task, sorted by name."""
    return _TASKS.all()


def get_task(name: str) -> Task:
    """The task registered as `name`, or a PipelineError listing the known ones."""
    return _TASKS.get(name)


def task_of(model: nn.Module) -> Task:
    """The registered task whose head `model` has (methods read their peft task type from it)."""
    for task in registered_tasks():
        if task.owns(model):
            return task
    raise PipelineError(
        f"model: {type(model).__name__} has no head of a known task; expected one of {sorted(_TASKS.entries)}"
    )

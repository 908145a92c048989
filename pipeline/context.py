"""What every stage receives: the config, the run directory layout, the task, the method, and the tracker."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.cache import StageCache
from pipeline.errors import PipelineError
from pipeline.methods import BaseMethod
from pipeline.tasks import Task

if TYPE_CHECKING:  # MLflow (~1 s to import) loads when the run starts tracking, not with every stage module
    from datasets import DatasetDict
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from pipeline.tracking import Tracker


@dataclass(frozen=True)
class RunLayout:
    """Where each stage writes its artifacts inside a run directory; stages talk only through these."""

    root: Path

    @property
    def split(self) -> Path:  # DatasetDict (text, origin, source_row, the task's columns), report.json, task files
        return self.root / "split"

    @property
    def tokenized(self) -> Path:  # DatasetDict (model inputs, labels, length) + tokenizer + stats.json
        return self.root / "tokenize"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:  # what Method.save wrote, plus the tokenizer
        return self.train / "model"

    @property
    def checkpoints(self) -> Path:
        return self.train / "checkpoints"

    @property
    def base_explore(self) -> Path:  # base-model embeddings + UMAP (cached: depends on no training)
        return self.root / "explore_base"

    @property
    def base_evaluate(self) -> Path:  # base-model test logits + metrics (cached)
        return self.root / "evaluate_base"

    @property
    def explore(self) -> Path:
        return self.root / "explore"

    @property
    def evaluate(self) -> Path:  # metrics.json, test_logits.npy (the task's outputs), test_rows.npz, reports
        return self.root / "evaluate"

    @property
    def test_rows(self) -> Path:  # Task.row_values of the trained model's test outputs, for comparison intervals
        return self.evaluate / "test_rows.npz"

    @property
    def errors(self) -> Path:
        return self.root / "errors"

    @property
    def merged_model(self) -> Path:
        return self.root / "merge" / "model"

    @property
    def export(self) -> Path:  # model.onnx (+ int8), tokenizer, export.json, the task's files
        return self.root / "export"


@dataclass
class RunContext:
    """The inputs shared by all stages of one pipeline run."""

    cfg: Any
    layout: RunLayout
    task: Task
    method: BaseMethod
    tracker: Tracker
    cache: StageCache

    def require(self, path: Path, producer: str) -> Path:
        """`path` if a previous stage wrote it, else a PipelineError saying which stage to run."""
        if not path.exists():
            raise PipelineError(
                f"stages: {path.relative_to(self.layout.root)} is missing in {self.layout.root}; "
                f"run the {producer!r} stage first (e.g. stages=[{producer},...])"
            )
        return path

    def dataset(self, stage: str) -> DatasetDict:
        """The splits a data stage saved: "split" (rows as drawn) or "tokenize" (model inputs)."""
        from datasets import load_from_disk

        root = {"split": self.layout.split, "tokenize": self.layout.tokenized}[stage]
        # In memory: shuffles, sorts and selects on a memory-mapped dataset write cache-*.arrow files beside it,
        # inside the stage that saved it, and a stage must not change another stage's outputs.
        return load_from_disk(str(self.require(root / "dataset", stage)), keep_in_memory=True)

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer the tokenize stage used (saved with its output)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.require(self.layout.tokenized / "tokenizer", "tokenize")))

    def base_model(self) -> nn.Module:
        """The pretrained model with the task's freshly initialised (seeded, so always identical) head."""
        return self.task.load_model(self)

    def method_base_model(self) -> nn.Module:
        """The base model as the method trains on it (QLoRA: 4-bit weights; everything else: the plain one)."""
        return self.task.load_model(self, **self.method.base_load_kwargs(self.cfg.method))

    def trained_model(self, full_precision: bool = False) -> nn.Module:
        """The model as the train stage left it (base + adapter, or full weights).

        full_precision puts the adapter on the plain base even where training used a quantized one (to ship it).
        """
        path = self.require(self.layout.model, "train")
        return self.method.load(self.base_model() if full_precision else self.method_base_model(), path)

    def deployable_model(self) -> nn.Module:
        """The model to ship: the merged one if `merge` ran, else the trained model on a full-precision base."""
        if self.layout.merged_model.exists():
            return self.task.load_saved(self.layout.merged_model)
        return self.trained_model(full_precision=True)

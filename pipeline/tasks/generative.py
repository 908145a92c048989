"""What the generative tasks (causal_lm, seq2seq) share: prompt and target templates over the data's columns,
generation scored with ROUGE-1/2/L and exact match, perplexity of the references, and the worst rows side by side.

The split holds each row's rendered prompt (`text`) and target (`target`), and its `label` when the data has one
(the split is stratified by it, and explore colours by it). Subclasses say how a (prompt, target) pair becomes
model inputs and labels, and how a model generates from a prompt.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from string import Formatter
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.atomic import read_json, write_json
from pipeline.console import batch_slices
from pipeline.data import LABEL, TEXT, RawData, label_list
from pipeline.data.splits import carve_splits
from pipeline.errors import PipelineError
from pipeline.ranges import Range, positive, ranged
from pipeline.results import StageResult
from pipeline.tasks import Task, TaskConfig

if TYPE_CHECKING:  # pandas (~0.3 s) loads where a frame is built, not when configs register
    from collections.abc import Callable

    import pandas as pd
    import torch
    from datasets import Dataset
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from pipeline.context import RunContext

TARGET = "target"  # split column: the rendered target text
GROUP = "group"  # tokenized column: the row's label, for explore ("label" would be taken for the target by the Trainer)
IGNORE = -100  # label id the loss skips (prompt tokens, padding)
ALPACA = ("instruction", "output")  # columns that make a file Alpaca-style (with an optional `input`)
EXAMPLES_FILE = "examples.json"  # the first rendered training rows, to see what the model is taught
GENERATION_METRICS = ("rougeL", "rouge1", "rouge2", "exact_match")


@dataclass
class GenerateConfig:
    """Decoding settings for evaluation, in-training validation, predict and the served model."""

    max_new_tokens: int = positive(32)
    num_beams: int = positive(1)  # 1 with do_sample=false: greedy
    do_sample: bool = False
    temperature: float = positive(1.0)
    top_p: float = ranged(1.0, Range(low=0, high=1, low_open=True))
    batch_size: int = positive(16)


@dataclass
class GenerativeConfig(TaskConfig):
    # str.format templates over the data's columns, e.g. "Write a headline for: {description}" and "{title}".
    # None: Alpaca-style data (instruction, input, output) as it is; otherwise {text} -> {label}.
    prompt: str | None = None
    target: str | None = None
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    # Rows each in-training validation generates for (ROUGE/exact match; loss uses all).
    validation_rows: int = positive(64)


def template_fields(template: str) -> list[str]:
    """The column names a str.format template reads."""
    return [name for _, name, _, _ in Formatter().parse(template) if name]


def render(frame: pd.DataFrame, template: str, what: str, origin: str) -> pd.Series:
    """`template` filled in from each row's columns, stripped; every field must be a column of `frame`."""
    import pandas as pd

    fields = template_fields(template)
    missing = [name for name in fields if name not in frame.columns]
    if missing:
        raise PipelineError(
            f"task.{what}: template {template!r} references column {missing[0]!r}, not in {origin} "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    values = frame[fields].astype(object).where(frame[fields].notna(), "").astype(str)
    try:
        texts = [template.format_map(row) for row in values.to_dict("records")] if fields else [template] * len(frame)
    except (ValueError, IndexError) as exc:
        raise PipelineError(f"task.{what}: template {template!r} is not a str.format template ({exc})") from exc
    return pd.Series(texts, index=frame.index, dtype=object).str.strip()


def alpaca_prompt(frame: pd.DataFrame) -> pd.Series:
    """Alpaca's instruction, then its input (when the row has one) after a blank line."""
    instruction = frame["instruction"].fillna("").astype(str).str.strip()
    extra = frame["input"].fillna("").astype(str).str.strip() if "input" in frame.columns else ""
    return (instruction + np.where(extra == "", "", "\n\n" + extra)).str.strip()


def rendered_rows(frame: pd.DataFrame, task_cfg: Any, origin: str) -> pd.DataFrame:
    """`text` (the prompt), `target`, and `label` when the data has one; empty prompts or targets are an error."""
    import pandas as pd

    alpaca = task_cfg.prompt is None and task_cfg.target is None and set(ALPACA) <= set(frame.columns)
    prompt = alpaca_prompt(frame) if alpaca else render(frame, task_cfg.prompt or "{text}", "prompt", origin)
    target = render(frame, "{output}" if alpaca else task_cfg.target or "{label}", "target", origin)
    for what, texts in (("prompt", prompt), ("target", target)):
        empty = texts == ""
        if empty.any():
            raise PipelineError(
                f"task.{what}: {int(empty.sum())} empty {what}(s) in {origin} (first at row {int(empty.idxmax())}); "
                f"fill them in, or drop those rows"
            )
    rows = pd.DataFrame({TEXT: prompt, TARGET: target})
    if LABEL in frame.columns and frame[LABEL].notna().all():
        rows[LABEL] = frame[LABEL].astype(str)
    return rows


def generate_ids(
    task: GenerativeTask,
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: Any,
    tokenizer: PreTrainedTokenizerBase,
) -> torch.Tensor:
    """The ids `model.generate` adds after each left-padded prompt, decoding as `task.generate` says."""
    import torch

    sampling = bool(settings["do_sample"])
    with torch.inference_mode():
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=settings["max_new_tokens"],
            num_beams=settings["num_beams"],
            do_sample=sampling,
            temperature=settings["temperature"] if sampling else None,
            top_p=settings["top_p"] if sampling else None,
            pad_token_id=tokenizer.pad_token_id,
        )
    return task.new_tokens(generated, input_ids)


def restore_order(order: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values computed in `order` put back in dataset order."""
    out = np.empty_like(values)
    out[order] = values
    return out


def side_by_side(frame: pd.DataFrame, path: Path) -> None:
    """A Markdown table (newlines and pipes escaped) that reads in the MLflow artifact viewer."""
    cells = frame.astype(str).apply(lambda col: col.str.replace("|", r"\|").str.replace("\n", "<br>"))
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class GenerationErrors(StageResult):
    n_test: int
    n_no_overlap: int  # generations sharing no word with the reference (ROUGE-1 = 0)

    def metrics(self) -> dict[str, float]:
        return {
            "n_no_overlap": float(self.n_no_overlap),
            "no_overlap_rate": self.n_no_overlap / max(self.n_test, 1),
        }


class GenerativeTask(Task):
    """A prompt in, a text out; scored by comparing the generation with the reference text."""

    data_fields = ()  # columns come from the templates; a label column is optional
    headline_metric = "rougeL"
    comparison_metrics = ("rougeL", "rouge1", "rouge2", "exact_match", "perplexity")
    selection_metric = "rougeL"
    validation_metrics = GENERATION_METRICS
    adds_head = False  # the pretrained LM head is the task's head
    token_level_loss = True  # transformers' LM losses divide by the label tokens the Trainer counts
    onnx_positions_from_mask = True  # batched generation left-pads prompts
    target_column = TARGET
    served_model_name = "generator"

    # --- how a subclass feeds and decodes its model --------------------------------------------------
    @abstractmethod
    def prompt_batches(self, rows: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
        """Rows holding only each prompt's model inputs (what generation and the embeddings start from)."""

    @abstractmethod
    def new_tokens(self, generated: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The generated ids after the prompt (decoder-only models return the prompt too)."""

    @abstractmethod
    def target_logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) aligned so logits[:, i] predicts labels[:, i]; IGNORE marks non-target positions."""

    @abstractmethod
    def encode_prompts(self, tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
        """Token ids of rendered prompts as the model sees them at generation time (template applied)."""

    def embedding_model(self, model: nn.Module) -> nn.Module:
        """The module whose last hidden states represent a prompt (explore)."""
        return model

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase, task_cfg: Any = None) -> PreTrainedTokenizerBase:
        """Give the tokenizer a pad token (causal LMs often lack one: their EOS pads, masked out of the loss)."""
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    # --- model ---------------------------------------------------------------------------------------
    def load_model(self, ctx: RunContext, **kwargs: Any) -> nn.Module:
        import transformers

        from pipeline.models import load_pretrained

        transformers.set_seed(ctx.cfg.seed)
        model = load_pretrained(self.auto_class(), ctx.cfg.model, **kwargs)
        if model.config.pad_token_id is None:  # generate() and the loss need it; the tokenizer's (EOS) one
            model.config.pad_token_id = ctx.tokenizer.pad_token_id
        return model

    def skeleton(self, model_cfg: Any) -> nn.Module:
        import torch

        from pipeline.models import load_config

        with torch.device("meta"):
            return self.auto_class().from_config(load_config(model_cfg))

    # --- data ----------------------------------------------------------------------------------------
    def split(self, raw: RawData, cfg: Any) -> dict[str, pd.DataFrame]:
        frames = {name: rendered_rows(frame, cfg.task, f"data ({name})") for name, frame in raw.frames.items()}
        labelled = all(LABEL in frame.columns for frame in frames.values())
        if not labelled:
            splits = carve_splits(frames, cfg.data, cfg.seed, stratify_by=None)
            return {name: frame[[TEXT, TARGET, "origin", "source_row"]] for name, frame in splits.items()}
        # Stratified by class id, in the class list's order, exactly as classification draws: with the same data and
        # seed both tasks get the same rows in each split, so exact match and a classifier's accuracy compare.
        index = {name: i for i, name in enumerate(label_list(raw))}
        frames = {name: frame.assign(label_id=frame[LABEL].map(index)) for name, frame in frames.items()}
        splits = carve_splits(frames, cfg.data, cfg.seed, stratify_by="label_id")
        return {name: frame[[TEXT, TARGET, LABEL, "origin", "source_row"]] for name, frame in splits.items()}

    def describe_split(
        self, raw: RawData, splits: dict[str, pd.DataFrame], out: Path
    ) -> tuple[dict[str, Any], list[str]]:
        write_json(out / EXAMPLES_FILE, splits["train"][[TEXT, TARGET]].head(5).to_dict("records"))
        report: dict[str, Any] = {"stratified_by": LABEL if LABEL in splits["train"].columns else None}
        if report["stratified_by"]:
            report["class_counts"] = {s: dict(Counter(frame[LABEL])) for s, frame in splits.items()}
        return report, [EXAMPLES_FILE]

    def split_params(self, ctx: RunContext) -> dict[str, Any]:
        report = read_json(ctx.require(ctx.layout.split / "report.json", "split"))
        return {"data.stratified_by": report.get("stratified_by")}

    def collator(self, tokenizer: PreTrainedTokenizerBase, padding: str, max_length: int) -> Any:
        """Pads inputs with the pad token and labels with IGNORE, on the right (training and the loss)."""
        from transformers import DataCollatorForSeq2Seq

        kwargs = {"padding": "max_length", "max_length": max_length} if padding == "max_length" else {}
        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, **kwargs)

    def model_rows(self, rows: Dataset) -> Dataset:
        """Only the columns a forward pass with labels takes."""
        return rows.select_columns(["input_ids", "attention_mask", "labels"])

    # --- outputs and scores --------------------------------------------------------------------------
    def generate(self, model: nn.Module, rows: Dataset, ctx: RunContext) -> list[str]:
        """Decoded generations for the rows' prompts, in dataset order (batched by prompt length, left padded)."""
        from pipeline.inference import device, length_order

        tokenizer, settings = ctx.tokenizer, ctx.cfg.task.generate
        prompts = self.prompt_batches(rows, tokenizer)
        order = length_order(prompts)
        model.eval().to(device())
        texts: list[str] = []
        for rows_at in batch_slices(len(order), settings.batch_size, "generating"):
            features = [prompts[int(i)] for i in order[rows_at]]
            batch = tokenizer.pad(features, padding_side="left", return_tensors="pt").to(device())
            new = generate_ids(self, model, batch["input_ids"], batch["attention_mask"], settings, tokenizer)
            texts += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
        return restore_order(order, np.array(texts, dtype=object)).tolist() if texts else []

    def reference_nll(self, model: nn.Module, rows: Dataset, ctx: RunContext, batch_size: int) -> np.ndarray:
        """Per row: (summed negative log-likelihood of the reference's tokens, their count), in dataset order."""
        import torch

        from pipeline.inference import device, length_order

        order = length_order(rows)
        collate = self.collator(ctx.tokenizer, "dynamic", ctx.cfg.model.max_length)
        inputs = self.model_rows(rows)
        out = []
        model.eval().to(device())
        with torch.inference_mode():
            for rows_at in batch_slices(len(order), batch_size, "reference NLL"):
                batch = collate([inputs[int(i)] for i in order[rows_at]])
                logits, labels = self.target_logits(model, {k: v.to(device()) for k, v in batch.items()})
                mask = labels != IGNORE
                nll = torch.nn.functional.cross_entropy(
                    logits.float().transpose(1, 2), labels.masked_fill(~mask, 0), reduction="none"
                )
                out.append(torch.stack([(nll * mask).sum(1), mask.sum(1).float()], 1).double().cpu().numpy())
        return restore_order(order, np.concatenate(out)) if out else np.zeros((0, 2))

    def outputs(self, model: nn.Module, dataset: Dataset, ctx: RunContext, batch_size: int) -> np.ndarray:
        """A record per row: the generation and the reference's summed NLL and token count (a structured array,
        so evaluate's test_logits.npy holds it without pickling)."""
        generated = self.generate(model, dataset, ctx)
        nll = self.reference_nll(model, dataset, ctx, batch_size)
        width = max([len(t) for t in generated] + [1])
        records = np.zeros(len(generated), dtype=[("generated", f"U{width}"), ("nll", "f8"), ("n_tokens", "f8")])
        records["generated"], records["nll"], records["n_tokens"] = generated, nll[:, 0], nll[:, 1]
        return records

    def score(self, outputs: np.ndarray, dataset: Dataset, ctx: RunContext) -> dict[str, Any]:
        from pipeline.metrics import generation_metrics

        metrics = generation_metrics(outputs["generated"].tolist(), dataset[TARGET])
        metrics.pop("per_row")
        tokens = float(outputs["n_tokens"].sum())
        metrics["perplexity"] = math.exp(float(outputs["nll"].sum()) / tokens) if tokens else float("nan")
        return metrics

    def row_values(self, outputs: np.ndarray, dataset: Dataset, ctx: RunContext) -> dict[str, np.ndarray]:
        from pipeline.metrics import generation_metrics

        per_row = generation_metrics(outputs["generated"].tolist(), dataset[TARGET])["per_row"]
        return {
            **{name: np.asarray(per_row[name]) for name in GENERATION_METRICS},
            "nll": outputs["nll"],
            "n_tokens": outputs["n_tokens"],
        }

    def resampled_metrics(self, rows: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
        """Means of the per-row scores; perplexity over the resample's tokens, as `score` computes it."""
        out = {name: rows[name][index].mean(1) for name in GENERATION_METRICS}
        tokens = rows["n_tokens"][index].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["perplexity"] = np.where(tokens > 0, np.exp(rows["nll"][index].sum(1) / tokens), np.nan)
        return out

    def trainer_metrics(self, ctx: RunContext) -> None:
        return None  # the Trainer computes the loss; generation metrics come from `validation_scorer`

    def validation_scorer(self, ctx: RunContext, rows: Dataset) -> Callable[[nn.Module], dict[str, float]]:
        """ROUGE and exact match of generations on task.validation_rows seeded-random validation rows (the rows
        come sorted by length; a random draw keeps long and short prompts)."""
        from pipeline.metrics import generation_metrics

        sample = rows.shuffle(seed=ctx.cfg.seed).select(range(min(ctx.cfg.task.validation_rows, len(rows))))

        def score(model: nn.Module) -> dict[str, float]:
            metrics = generation_metrics(self.generate(model, sample, ctx), sample[TARGET])
            return {name: float(metrics[name]) for name in GENERATION_METRICS}

        return score

    def write_evaluation(self, base: dict[str, Any], trained: dict[str, Any] | None, out: Path) -> list[str]:
        import pandas as pd

        rows = [{"metric": k, "base": base[k], **({"trained": trained[k]} if trained else {})} for k in base]
        side_by_side(pd.DataFrame(rows).round(4), out / "metrics.md")
        return ["metrics.md"]

    def errors(
        self, outputs: np.ndarray, rows: Dataset, ctx: RunContext, out: Path
    ) -> tuple[GenerationErrors, list[str]]:
        """Every test row scored (per_row_scores.csv); the lowest-scoring side by side (CSV, Markdown, HTML)."""
        import pandas as pd

        from pipeline.metrics import generation_metrics

        per_row = generation_metrics(outputs["generated"].tolist(), rows[TARGET])["per_row"]
        frame = pd.DataFrame(
            {
                "test_row": np.arange(len(rows)),
                "prompt": rows[TEXT],
                "reference": rows[TARGET],
                "generated": outputs["generated"],
                **per_row,
                "reference_nll_per_token": outputs["nll"] / np.maximum(outputs["n_tokens"], 1),
            }
        ).sort_values(["rougeL", "reference_nll_per_token"], ascending=[True, False], kind="stable")
        worst = frame.head(ctx.cfg.stage.errors.top_k)
        frame.to_csv(out / "per_row_scores.csv", index=False)
        worst.to_csv(out / "lowest_scoring.csv", index=False)
        shown = worst[["test_row", "prompt", "reference", "generated", "rougeL"]].round(3)
        side_by_side(shown, out / "lowest_scoring.md")
        shown.to_html(out / "lowest_scoring.html", index=False)
        result = GenerationErrors(n_test=len(frame), n_no_overlap=int((frame["rouge1"] == 0).sum()))
        return result, ["lowest_scoring.csv", "lowest_scoring.md", "lowest_scoring.html"]

    def explore_groups(self, rows: Dataset, ctx: RunContext) -> tuple[np.ndarray, list[str]] | None:
        if GROUP not in rows.column_names:
            return None
        names = sorted(set(rows[GROUP]))
        index = {name: i for i, name in enumerate(names)}
        return np.array([index[g] for g in rows[GROUP]]), names

    def embed(self, model: nn.Module, rows: Dataset, ctx: RunContext) -> np.ndarray:
        """Pooled last hidden states over each prompt alone (the target is not part of what the model is given)."""
        from pipeline.config import value
        from pipeline.inference import embed

        cfg = ctx.cfg.stage.explore
        prompts = self.prompt_batches(rows, ctx.tokenizer)
        return embed(self.embedding_model(model), prompts, ctx.tokenizer, cfg.batch_size, value(cfg.pooling))

    def parity_logits(self, model: nn.Module, rows: Dataset, ctx: RunContext) -> np.ndarray:
        """Logits at the target positions of `rows` (a whole vocabulary per target token), for merge parity."""
        import torch

        from pipeline.inference import device

        batch = self.collator(ctx.tokenizer, "dynamic", ctx.cfg.model.max_length)(list(self.model_rows(rows)))
        model.eval().to(device())
        with torch.inference_mode():
            logits, labels = self.target_logits(model, {k: v.to(device()) for k, v in batch.items()})
        return logits[labels != IGNORE].float().cpu().numpy()

    # --- export, predict, serving ----------------------------------------------------------------------
    def export_figures(self, session: Any, rows: Dataset, ctx: RunContext) -> tuple[dict[str, float], Any]:
        """Generation metrics of the exported forward decoding greedily on the test prompts; the generations."""
        from pipeline.metrics import generation_metrics

        generator = OnnxGenerator(self, session, ctx.tokenizer, dict(ctx.cfg.task.generate))
        prompts = self.prompt_batches(rows, ctx.tokenizer)["input_ids"]
        slices = batch_slices(len(prompts), ctx.cfg.task.generate.batch_size, "ONNX generating")
        generated = [g for rows_at in slices for g in generator.from_ids(prompts[rows_at])]
        metrics = generation_metrics(generated, rows[TARGET])
        return {f"test_{name}": float(metrics[name]) for name in GENERATION_METRICS}, np.array(generated, dtype=object)

    def write_export_info(self, ctx: RunContext, out: Path) -> None:
        write_json(out / "generate.json", dict(ctx.cfg.task.generate))

    def predictor(self, model_dir: Path, backend: str) -> Generator:
        if not backend.startswith("onnx"):
            return TorchGenerator(self, model_dir)
        if self.export_skip_reason:
            raise PipelineError(f"--backend: {backend} is not available for {self.name} ({self.export_skip_reason})")
        return OnnxGenerator.from_export(self, model_dir, int8=backend == "onnx-int8")

    def predict_frame(self, predictor: Any, frame: pd.DataFrame, text_column: str, batch_size: int) -> pd.DataFrame:
        """The input rows plus `generated`, and `error` for rows with no text."""
        if text_column not in frame.columns:
            raise PipelineError(
                f"--text-column: column {text_column!r} not in input (columns: {', '.join(frame.columns)})"
            )
        texts = frame[text_column]
        valid = texts.map(lambda t: isinstance(t, str) and t.strip() != "").to_numpy()
        generated = np.full(len(frame), None, dtype=object)
        rows = np.flatnonzero(valid)
        for batch in batch_slices(len(rows), batch_size, "generating"):
            generated[rows[batch]] = predictor.generate([texts.iloc[i] for i in rows[batch]])
        out = frame.copy()
        out["generated"] = generated
        out["error"] = np.where(valid, "", f"empty or non-text {text_column}")
        return out

    def serving_example(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({"text": ["Stocks rallied after the central bank held interest rates steady."]})


class Generator(ABC):
    """Raw prompts in, generations out: the task's prompt format applied, greedy (or beam) decoding."""

    def __init__(self, task: GenerativeTask, tokenizer: PreTrainedTokenizerBase, settings: dict[str, Any]) -> None:
        self.task, self.tokenizer, self.settings = task, task.prepare_tokenizer(tokenizer), settings

    def generate(self, texts: list[str]) -> list[str]:
        return self.from_ids(self.task.encode_prompts(self.tokenizer, texts))

    def from_ids(self, prompts: list[list[int]]) -> list[str]:
        """Generations for encoded prompts (one batch, left padded)."""
        batch = self.tokenizer.pad([{"input_ids": ids} for ids in prompts], padding_side="left", return_tensors="np")
        new = self.new_ids(batch["input_ids"], batch["attention_mask"])
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    @abstractmethod
    def new_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        """The token ids generated after each (left-padded) prompt."""


def generation_settings(model_dir: Path) -> dict[str, Any]:
    """The run's decoding settings saved beside an exported model, else the defaults."""
    info = model_dir / "generate.json"
    return read_json(info) if info.is_file() else vars(GenerateConfig())


class TorchGenerator(Generator):
    """A transformers model directory (merged, or fully fine-tuned), decoding with `generate`."""

    def __init__(self, task: GenerativeTask, model_dir: Path) -> None:
        from transformers import AutoTokenizer

        super().__init__(task, AutoTokenizer.from_pretrained(str(model_dir)), generation_settings(model_dir))
        self.model = task.auto_class().from_pretrained(str(model_dir)).eval()

    def new_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        import torch

        ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
        return generate_ids(self.task, self.model, ids, mask, self.settings, self.tokenizer)


class OnnxGenerator(Generator):
    """An exported causal LM forward (model.onnx / model.int8.onnx), decoding greedily."""

    def __init__(self, task: GenerativeTask, session: Any, tokenizer: Any, settings: dict[str, Any]) -> None:
        super().__init__(task, tokenizer, settings)
        self.session = session

    @classmethod
    def from_export(cls, task: GenerativeTask, export_dir: Path, int8: bool) -> OnnxGenerator:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = export_dir / ("model.int8.onnx" if int8 else "model.onnx")
        if not path.is_file():
            raise PipelineError(f"model: {path} not found (run the export stage; int8 needs stage.export.int8=true)")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return cls(task, session, AutoTokenizer.from_pretrained(str(export_dir)), generation_settings(export_dir))

    def new_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        from pipeline.inference import onnx_greedy

        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        return onnx_greedy(self.session, input_ids, attention_mask, self.settings["max_new_tokens"], eos, pad)

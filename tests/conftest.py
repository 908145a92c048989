"""Shared fixtures: tiny random BERT/DistilBERT models and a synthetic 3-class text task, built in code."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
    MPNetConfig,
    MPNetForSequenceClassification,
)

from pipeline.__main__ import CONF_DIR

CLASSES = {
    "alpha": ["apple", "banana", "cherry", "grape"],
    "beta": ["engine", "wheel", "brake", "piston"],
    "gamma": ["violin", "piano", "flute", "drum"],
}
FILLER = ["the", "a", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "with", "as", "by"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def synthetic_frame(rows_per_class: int, seed: int = 0) -> pd.DataFrame:
    """Texts of filler words plus 2-3 class keywords: learnable by a tiny model in a few dozen steps."""
    rng = random.Random(seed)
    rows = []
    for label, keywords in CLASSES.items():
        for _ in range(rows_per_class):
            words = rng.choices(FILLER, k=rng.randint(5, 12)) + rng.choices(keywords, k=rng.randint(2, 3))
            rng.shuffle(words)
            rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


# Hidden size 32, 2 layers, 2 heads; init range 0.2 (not 0.02) so a random encoder's outputs differ by input.
TINY_ARCHS = {
    "bert": (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37},
    ),
    # bitsandbytes' CPU 4-bit kernel needs every quantized layer's input width to be a multiple of 64 (QLoRA test).
    "bert64": (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128},
    ),
    "distilbert": (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertTokenizerFast,
        {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 37},
    ),
    # model=mpnet's architecture (its YAML's target sets are tested on it); a WordPiece tokenizer serves the ids
    "mpnet": (
        MPNetConfig,
        MPNetForSequenceClassification,
        BertTokenizerFast,
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "pad_token_id": 0,
        },
    ),
}


def _save_tiny(path: Path, kind: str) -> Path:
    """Save a random-init classifier of `kind` and a WordPiece tokenizer over the synthetic vocabulary."""
    vocab = SPECIALS + FILLER + [w for words in CLASSES.values() for w in words]
    config_cls, model_cls, tokenizer_cls, sizes = TINY_ARCHS[kind]
    config = config_cls(vocab_size=len(vocab), max_position_embeddings=64, initializer_range=0.2, **sizes)
    torch.manual_seed(0)  # the same "pretrained" weights in every test process, so outcomes are repeatable
    model_cls(config).save_pretrained(path)
    tokenizer_cls(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def own_tracking_store() -> None:
    """Runs in tests track to their own output directory, even where the user exports MLFLOW_TRACKING_URI."""
    import pipeline

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    pipeline.LAUNCH_TRACKING_URI = None


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m pipeline` subprocess: this one's, without the MLFLOW_TRACKING_URI that
    the tests' own `mlflow.set_tracking_uri` calls leave in it (the child would take it for the user's store)."""
    return {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **extra}


@pytest.fixture(scope="session", autouse=True)
def numba_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One numba compile cache for the session's UMAP runs, in-process and in CLI subprocesses, rather than one
    per test output directory (each a fresh ~10 s compile)."""
    path = tmp_path_factory.mktemp("numba")
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {kind: _save_tiny(root / kind, kind) for kind in TINY_ARCHS}


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    synthetic_frame(rows_per_class=120).to_csv(path, index=False)
    return path


TINY_TARGETS = {
    "bert": "{attention_qv: [query, value], attention_all: [query, key, value, attention.output.dense], "
    "ia3: [key, value, output.dense], ia3_feedforward: [output.dense]}",
    "distilbert": "{attention_qv: [q_lin, v_lin], attention_all: [q_lin, k_lin, v_lin, out_lin], "
    "ia3: [k_lin, v_lin, lin2], ia3_feedforward: [lin2]}",
}


def tiny_overrides(model_dir: Path, data_path: Path, output_dir: Path, kind: str = "bert") -> list[str]:
    """Overrides that point the pipeline at a tiny model and synthetic data, with fast settings."""
    return [
        "data=csv",
        f"data.path={data_path}",
        f"model.name_or_path={model_dir}",
        f"model.target_module_sets={TINY_TARGETS[kind]}",
        "model.max_length=32",
        f"paths.output_dir={output_dir}",
        "train.learning_rate=1e-2",
        "train.max_steps=80",
        "train.eval_steps=20",
        "train.logging_steps=10",
        "stage.explore.n_samples=24",
        "stage.explore.n_neighbors=5",
        "tracking.experiment=tests",
    ]


@pytest.fixture(scope="session")
def compose_config() -> Callable[[list[str]], DictConfig]:
    """Compose conf/ exactly as `python -m pipeline` does, with the given overrides."""
    from pipeline.config import register_configs

    register_configs()

    def _compose(overrides: list[str]) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=overrides)

    return _compose


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, tiny_models, synthetic_csv, compose_config):
    """One full pipeline run (all stages) of LoRA on the tiny BERT; many tests inspect its outputs."""
    from pipeline.runner import run_pipeline

    out = tmp_path_factory.mktemp("e2e")
    cfg = compose_config(tiny_overrides(tiny_models["bert"], synthetic_csv, out))
    run_dir = out / "run"
    results = run_pipeline(cfg, run_dir, ["method=lora"])
    return cfg, run_dir, results


# --- generative tasks: tiny random Llama (causal) and T5 (seq2seq) over the same synthetic vocabulary -----------
# The task to learn: a text with class keywords -> its class word (exact match), as causal_lm and seq2seq.
GEN_SPECIALS = ["<pad>", "</s>", "<s>", "<unk>"]
GEN_WORDS = ["###", "Instruction", "Response", ":", "topic", "?", "summarize"]


def _word_tokenizer(path: Path) -> None:
    """A word-level fast tokenizer over the synthetic vocabulary (EOS appended by the tasks, not the tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = GEN_SPECIALS + GEN_WORDS + FILLER + list(CLASSES) + [w for ws in CLASSES.values() for w in ws]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()  # words, and punctuation runs apart
    PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>"
    ).save_pretrained(path)
    return len(words)


def _save_tiny_generative(path: Path, kind: str) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    n_words = _word_tokenizer(path)
    torch.manual_seed(0)
    if kind == "llama":  # widths of 64: bitsandbytes' CPU 4-bit kernel needs multiples of 64 (QLoRA, 8-bit tests)
        config = LlamaConfig(
            vocab_size=n_words,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
            tie_word_embeddings=True,
        )
        LlamaForCausalLM(config).save_pretrained(path)
    else:
        config = T5Config(
            vocab_size=n_words,
            d_model=64,
            d_ff=128,
            d_kv=32,
            num_layers=2,
            num_heads=2,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
        T5ForConditionalGeneration(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_generative(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generative")
    return {kind: _save_tiny_generative(root / kind, kind) for kind in ("llama", "t5")}


GEN_TARGETS = {
    "llama": "{attention_qv: [q_proj, v_proj], attention_all: [q_proj, k_proj, v_proj, o_proj], "
    "ia3: [k_proj, v_proj, down_proj], ia3_feedforward: [down_proj]}",
    "t5": "{attention_qv: [q, v], attention_all: [q, k, v, o], ia3: [k, v, wo], ia3_feedforward: [wo]}",
}


def generative_overrides(model_dir: Path, data_path: Path, output_dir: Path, kind: str) -> list[str]:
    """Overrides for a generative task on a tiny model and the synthetic keyword -> class-word data."""
    task = "causal_lm" if kind == "llama" else "seq2seq"
    return [
        f"task={task}",
        "data=csv",
        f"data.path={data_path}",
        f"model.name_or_path={model_dir}",
        f"model.target_module_sets={GEN_TARGETS[kind]}",
        "model.max_length=48",
        f"paths.output_dir={output_dir}",
        "task.generate.max_new_tokens=4",
        "task.validation_rows=24",
        "train.max_steps=60",
        "train.eval_steps=20",
        "train.logging_steps=10",
        "train.batch_size=16",
        "stage.explore.n_samples=24",
        "stage.explore.n_neighbors=5",
        "stage.evaluate.batch_size=32",
        "tracking.experiment=tests",
    ]


@pytest.fixture(scope="module")
def running_services():
    """`make services` as the CLI starts it, in a folder the postgres user can reach: (root, console)."""
    root = Path(tempfile.mkdtemp(prefix="services-", dir="/tmp"))
    root.chmod(0o755)
    command = [sys.executable, "-m", "pipeline.services", "start", "--root", str(root)]
    result = subprocess.run(command, cwd=CONF_DIR.parent, env=cli_env(), capture_output=True, text=True, timeout=300)
    try:
        assert result.returncode == 0, result.stderr[-2000:]
        yield root, result.stdout
    finally:
        subprocess.run(
            [*command[:3], "stop", "--root", str(root)], cwd=CONF_DIR.parent, capture_output=True, timeout=120
        )
        shutil.rmtree(root, ignore_errors=True)

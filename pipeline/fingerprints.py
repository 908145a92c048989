"""Content fingerprints of what stages depend on: data files, tokenizer and model files, configs.

They key the stage cache and go into the run manifest, so "same inputs" means same bytes, not same names.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.config import DataSource, value
from pipeline.models import resolve_model_path

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ckpt"}


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime) so each file is read once per process."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest(obj: Any) -> str:
    """Stable SHA-256 of a JSON-able object (configs are converted to plain containers first)."""
    if isinstance(obj, DictConfig):
        obj = OmegaConf.to_container(obj, resolve=True, enum_to_str=True)
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def data_files(data_cfg: Any) -> list[Path]:
    """The local files a data source reads (none for the Hub, which is keyed by dataset id)."""
    source = DataSource(value(data_cfg.source))
    if source == DataSource.ag_news_csv and data_cfg.dir:
        root = Path(data_cfg.dir).expanduser()
        return [p for p in (root / "classes.txt", root / "train.csv", root / "test.csv") if p.is_file()]
    if source == DataSource.file:
        paths = [data_cfg.path, data_cfg.train_path, data_cfg.validation_path, data_cfg.test_path]
        return [Path(p).expanduser() for p in paths if p and Path(p).expanduser().is_file()]
    return []


def file_hashes(paths: list[Path]) -> dict[str, str]:
    return {str(p.resolve()): sha256_file(p) for p in paths}


def model_files(model_cfg: Any, weights: bool) -> dict[str, Any]:
    """Hashes of the model directory's files (weights included or not), or the Hub id and revision."""
    path = resolve_model_path(model_cfg)
    if not os.path.isdir(path):
        return {"hub": path, "revision": model_cfg.revision}
    files = sorted(p for p in Path(path).iterdir() if p.is_file() and (weights or p.suffix not in WEIGHT_SUFFIXES))
    return {p.name: sha256_file(p) for p in files}


def split_key(cfg: Any) -> str:
    return digest(
        {
            "task": OmegaConf.to_container(cfg.task, resolve=True, enum_to_str=True),  # which columns, stratified
            "data": OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True),
            "seed": cfg.seed,
            "files": sorted(file_hashes(data_files(cfg.data)).values()),
        }
    )


def tokenize_key(cfg: Any) -> str:
    return digest(
        {
            "split": split_key(cfg),
            "tokenizer": model_files(cfg.model, weights=False),
            "max_length": cfg.model.max_length,
        }
    )


def base_model_key(cfg: Any, stage_cfg: Any) -> str:
    """Key of a stage that runs the base model (pretrained encoder + seeded head) on tokenized data."""
    return digest(
        {
            "tokenize": tokenize_key(cfg),
            "model": model_files(cfg.model, weights=True),
            "seed": cfg.seed,
            "stage": OmegaConf.to_container(stage_cfg, resolve=True, enum_to_str=True),
        }
    )

"""Run manifest: everything needed to tell whether two runs had the same code, inputs and machine."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from pipeline.config import value
from pipeline.fingerprints import data_files, file_hashes
from pipeline.models import conversion_of


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


_STARTED_AT: dict[str, Any] = {}  # the first git reading this process took, for git_state


def git_state() -> dict[str, Any]:
    """Commit and whether tracked files differ from it (a dirty run cannot be reproduced from the commit).

    A multirun runs every job in one process: modules imported for the first job stay as they were, while later jobs
    read the config files and lazily imported stages anew. So when the commit or the tracked files changed since the
    process's first reading, neither commit alone made the run: it is recorded dirty, with the commit it started at.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    state: dict[str, Any] = {"commit": commit or "unknown", "dirty": bool(status) if status is not None else None}
    if commit is None or status is None:
        return state
    first = _STARTED_AT.setdefault("reading", (commit, status))
    if first != (commit, status):
        state["dirty"] = True
        state["process_started_at"] = first[0]
    return state


def note_code_at_start() -> None:
    """Take the process's first git reading, which git_state compares later ones with, unless it is taken."""
    if not _STARTED_AT:
        git_state()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()}
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gb": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
        }
    return info


def determinism() -> dict[str, Any]:
    """The settings that decide whether CUDA results repeat bit for bit (CPU runs repeat regardless)."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }


def installed_packages() -> dict[str, str]:
    """Name -> version of what imports: where a package sits twice on sys.path, the first copy wins, as in import."""
    found: dict[str, str] = {}
    for dist in distributions():  # in sys.path order
        found.setdefault(dist.metadata["Name"], dist.version)
    return dict(sorted(found.items()))


def build_manifest(cfg: Any, overrides: list[str]) -> dict[str, Any]:
    return {
        "git": git_state(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "hardware": hardware(),
        "determinism": determinism(),
        "packages": installed_packages(),
        "data": {
            "source": value(cfg.data.source),
            "hub_dataset": cfg.data.name,
            "files_sha256": file_hashes(data_files(cfg.data)),
        },
        "model_conversion": conversion_of(cfg.model),  # GGUF: the weights were dequantized from these types
        "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "overrides": overrides,
    }

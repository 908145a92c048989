"""explore: validation sample -> sentence embeddings -> UMAP 2-D, one hexbin panel per group (the task's classes).

Runs on the base encoder and, when a trained model exists, on it too, so the before/after shows.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from datasets import Dataset  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402
from torch import nn  # noqa: E402

from pipeline.atomic import atomic_dir  # noqa: E402
from pipeline.config import value  # noqa: E402
from pipeline.context import RunContext  # noqa: E402
from pipeline.fingerprints import base_model_key  # noqa: E402
from pipeline.inference import autocast, resolved_precision  # noqa: E402
from pipeline.results import StageResult  # noqa: E402


@dataclass
class ExploreResult(StageResult):
    silhouette: dict[str, float]  # class separation of the embeddings, per model ("base", "trained")
    cache_hit: bool  # whether the base model's embeddings and projection came from the stage cache
    skipped_reason: str | None = None

    def metrics(self) -> dict[str, float]:
        return {**{f"{name}_silhouette": v for name, v in self.silhouette.items()}, "cache_hit": float(self.cache_hit)}


def import_umap(cache_dir: Path) -> Any:
    """umap, with numba's compiled code cached on disk under `cache_dir` so only the first process compiles it.

    umap-learn and pynndescent mark few of their ~250 jitted functions `cache=True`, so every new process spent
    ~10 s compiling the rest (numba has no switch for caching all); caching is enabled on each of their module-level
    dispatchers here. numba keys entries by the function's bytecode, closure values, source stamp and CPU; the
    directory is keyed by the three packages' versions because a cached function inlines the ones it calls.
    """
    import importlib.metadata

    import numba
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    versions = "-".join(f"{p}{importlib.metadata.version(p)}" for p in ("numba", "umap-learn", "pynndescent"))
    own = Path(cache_dir).expanduser().resolve() / "numba" / versions
    numba.config.CACHE_DIR = os.environ.get("NUMBA_CACHE_DIR") or str(own)  # a user's own setting wins
    import umap

    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in ("umap", "pynndescent"):
            for obj in vars(module).values():
                if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache):
                    obj.enable_caching()
    return umap


def project(embeddings: np.ndarray, n_neighbors: int, min_dist: float, seed: int, cache_dir: Path) -> np.ndarray:
    """UMAP to 2-D (imported here: only this stage should pay for numba)."""
    umap = import_umap(cache_dir)
    n_neighbors = max(2, min(n_neighbors, len(embeddings) - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed)
    return reducer.fit_transform(embeddings)


def compile_umap(cache_dir: Path) -> None:
    """Project random embeddings once, so numba's code for UMAP is in the cache before the first run needs it.

    `make setup` runs this: on a new machine the first projection compiles for ~30 s on 2 cores.
    """
    with warnings.catch_warnings():  # UMAP's note that a seed means one thread: runs filter it too
        warnings.simplefilter("ignore", UserWarning)
        project(np.random.default_rng(0).standard_normal((200, 384), dtype=np.float32), 15, 0.1, 0, cache_dir)


def plot_panels(points: dict[str, np.ndarray], labels: np.ndarray, names: list[str], path: Path) -> None:
    """One row per model, one hexbin panel per class, plus an all-classes scatter for orientation."""
    rows, cols = len(points), len(names) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for r, (model_name, xy) in enumerate(points.items()):
        ax = axes[r][0]
        for i, name in enumerate(names):
            mask = labels == i
            ax.scatter(xy[mask, 0], xy[mask, 1], s=3, alpha=0.6, label=name)
        ax.set_title(f"{model_name}: all classes", fontsize=9)
        ax.legend(fontsize=6, markerscale=3)
        for i, name in enumerate(names):
            ax = axes[r][i + 1]
            mask = labels == i
            ax.scatter(xy[:, 0], xy[:, 1], s=1, c="lightgrey")
            if mask.sum() > 0:
                ax.hexbin(xy[mask, 0], xy[mask, 1], gridsize=25, cmap="viridis", mincnt=1)
            ax.set_title(f"{model_name}: {name} (n={int(mask.sum())})", fontsize=9)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def embed_and_project(
    ctx: RunContext, model: nn.Module, sample: Dataset, precision: str
) -> tuple[np.ndarray, np.ndarray]:
    """The model's pooled embeddings of `sample`, computed in `precision` (fp32 or bf16), and their 2-D UMAP."""
    cfg = ctx.cfg.stage.explore
    with autocast(precision):
        embeddings = ctx.task.embed(model, sample, ctx)
    return embeddings, project(embeddings, cfg.n_neighbors, cfg.min_dist, ctx.cfg.seed, ctx.cfg.paths.cache_dir)


def build_base(ctx: RunContext, sample: Dataset, precision: str, out: Path) -> None:
    """Base-model embeddings and their UMAP projection: independent of training, so cached across runs."""
    embeddings, points = embed_and_project(ctx, ctx.base_model(), sample, precision)
    np.save(out / "embeddings.npy", embeddings)
    np.save(out / "umap.npy", points)


def run(ctx: RunContext) -> ExploreResult:
    validation = ctx.dataset("tokenize")["validation"]
    n = min(ctx.cfg.stage.explore.n_samples, len(validation))
    sample = validation.shuffle(seed=ctx.cfg.seed).select(range(n))
    groups = ctx.task.explore_groups(sample, ctx)
    if groups is None:
        reason = f"the {ctx.task.name} task has no groups to colour the embeddings by"
        ctx.tracker.tags({"explore.skipped": reason})
        return ExploreResult(silhouette={}, cache_hit=False, skipped_reason=reason)
    labels, names = groups
    precision = resolved_precision(value(ctx.cfg.stage.explore.precision), cpu_bf16=True)
    ctx.tracker.tags({"explore.precision": precision})
    # Keyed by what `auto` became here, so a cache shared with a machine without native bf16 is not mixed up
    key = base_model_key(ctx.cfg, OmegaConf.merge(ctx.cfg.stage.explore, {"precision": precision}))
    hit = ctx.cache.materialise(
        "explore_base", key, ctx.layout.base_explore, lambda out: build_base(ctx, sample, precision, out)
    )
    embeddings = {"base": np.load(ctx.layout.base_explore / "embeddings.npy")}
    points = {"base": np.load(ctx.layout.base_explore / "umap.npy")}
    if ctx.method.explore_skip_reason:
        ctx.tracker.tags({"explore.trained_skipped": ctx.method.explore_skip_reason})
    elif ctx.layout.model.exists():
        embeddings["trained"], points["trained"] = embed_and_project(ctx, ctx.trained_model(), sample, precision)
    silhouette = {}
    if len(set(labels.tolist())) > 1:
        silhouette = {name: float(silhouette_score(emb, labels)) for name, emb in embeddings.items()}
    with atomic_dir(ctx.layout.explore) as out:
        np.savez_compressed(
            out / "embeddings.npz", labels=labels, **embeddings, **{f"{k}_umap": v for k, v in points.items()}
        )
        plot_panels(points, labels, names, out / "umap_hexbin.png")
    ctx.tracker.artifact(ctx.layout.explore / "umap_hexbin.png", "explore")
    return ExploreResult(silhouette=silhouette, cache_hit=hit)

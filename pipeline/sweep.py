"""Optuna glue shared by the sweeper (hydra_plugins/pipeline_optuna_sweeper) and the trial it launches.

The sweeper owns the study; each trial is a normal pipeline run that finds its Optuna trial through
`cfg.trial`, reports the validation metric at each evaluation and stops early when the pruner says so.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from pipeline.errors import PipelineError

HEARTBEAT_S = 60  # RDB storages: a RUNNING trial silent for GRACE_S is failed (its worker died)
GRACE_S = 180
WORKER_ATTR = "worker"  # host:pid of the sweeper process that asked for the trial
RETRY_OF_ATTR = "retry_of"  # number of the stale trial this one re-runs
OVER_BUDGET_ATTR = "over_budget"  # on a trial asked once other workers had started n_trials: failed, never run
PARENT_ATTR = "mlflow_parent_run"  # the study's MLflow run id, made once by the worker that created the study
PRUNER_ATTR = "pruner"  # the study's pruner spec, stored on the study so each trial process can rebuild it


def open_storage(
    url: str | None, default_path: Path, on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> BaseStorage:
    """An RDB URL (sqlite:///, postgresql://, mysql://) or a journal file path (default: `default_path`).

    A journal file is safe for several local worker processes; an RDB server for several machines, whose dead
    workers' trials Optuna's heartbeat finds: `on_stale` is called for each one this process fails (only one
    process can fail a trial, so only one acts on it).
    """
    if url and "://" in url:
        from sqlalchemy.exc import SQLAlchemyError

        from pipeline.tracking import SERVER_WAIT_S, is_database, store_error, wait_for_database

        if is_database(url):  # Optuna fails at once on a database still starting up
            wait_for_database(url, SERVER_WAIT_S, "hydra.sweeper.storage")
        try:
            return RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, heartbeat_stale_trial_callback=on_stale
            )
        except (SQLAlchemyError, ImportError) as exc:
            raise store_error(url, exc, "hydra.sweeper.storage") from exc
    path = Path(url).expanduser() if url else default_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_pruner(spec: Any) -> optuna.pruners.BasePruner:
    """`{type: median|hyperband|none, ...}` -> an Optuna pruner (other non-null keys are the pruner's arguments)."""
    spec = {k: v for k, v in dict(spec or {}).items() if v is not None}
    kind = spec.pop("type", "none")
    pruners = {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "none": optuna.pruners.NopPruner,
    }
    if kind not in pruners:
        raise PipelineError(f"hydra.sweeper.pruner.type: unknown {kind!r}; expected one of {sorted(pruners)}")
    if kind == "none":  # takes no arguments; the schema's defaults for the others are not the user's mistake
        return optuna.pruners.NopPruner()
    try:
        return pruners[kind](**spec)
    except TypeError as exc:
        raise PipelineError(f"hydra.sweeper.pruner: {exc}") from exc


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead_local_worker(worker: str | None) -> bool:
    """True when `worker` ran on this host and its process is gone (a trial it left RUNNING is stale)."""
    if not worker or ":" not in worker:
        return False
    host, pid = worker.rsplit(":", 1)
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def open_trial(trial_cfg: Any, output_dir: Path) -> optuna.Trial | None:
    """The Optuna trial this run is, when the sweeper launched it; else None."""
    if trial_cfg.study is None:
        return None
    storage = open_storage(trial_cfg.storage, default_storage_path(output_dir, trial_cfg.study))
    study = optuna.load_study(study_name=trial_cfg.study, storage=storage)
    study.pruner = make_pruner(study.user_attrs.get(PRUNER_ATTR))
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, int(trial_cfg.number))
    return optuna.Trial(study, trial_id)


def default_storage_path(output_dir: Path, study: str) -> Path:
    return Path(output_dir).expanduser() / "optuna" / f"{study}.journal"

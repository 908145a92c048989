"""MLflow tracking: one run per pipeline run, an embedded sqlite store by default, clean end states."""

from __future__ import annotations

import fcntl
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import optuna
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf


def store_locations(cfg: Any) -> tuple[str, str | None]:
    """(tracking URI, artifact root): `tracking.uri`, else sqlite + artifacts under paths.output_dir.

    A new sqlite store is created under a file lock: sweep workers starting together would otherwise race
    through MLflow's schema migrations on the same file.
    """
    if cfg.tracking.uri:
        return str(cfg.tracking.uri), None
    out = Path(cfg.paths.output_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    # The ./mlruns file store is deprecated; sqlite needs an explicit artifact location.
    uri = f"sqlite:///{out / 'mlflow.db'}"
    with open(out / ".mlflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the schema if needed
    return uri, (out / "mlartifacts").as_uri()


def open_experiment(cfg: Any) -> tuple[MlflowClient, str]:
    """A client on the configured store and the id of `tracking.experiment`, created with its artifact location."""
    uri, artifact_root = store_locations(cfg)
    client = MlflowClient(uri)
    name = cfg.tracking.experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return client, experiment.experiment_id
    return client, client.create_experiment(
        name, artifact_location=f"{artifact_root}/{name}" if artifact_root else None
    )


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"a.b.c": value}; lists become their string form (MLflow params are strings)."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class _Terminated(KeyboardInterrupt):
    """SIGTERM or Ctrl-C, raised as an interrupt so the run ends KILLED instead of staying RUNNING."""


class _SigtermGate:
    """Holds a SIGTERM (or Ctrl-C) back while an MLflow write is in flight.

    Raised inside a write, the interrupt can leave the sqlite store's transaction open, and marking the run
    KILLED then fails with "database is locked"; held back, it is raised as soon as the write returns.
    """

    depth = 0
    pending = False

    @classmethod
    @contextmanager
    def closed(cls) -> Iterator[None]:
        cls.depth += 1
        try:
            yield
        finally:
            cls.depth -= 1
        if cls.depth == 0 and cls.pending:
            cls.pending = False
            raise _Terminated()

    @classmethod
    def handle(cls, signum: int, frame: Any) -> None:
        if cls.depth:
            cls.pending = True
            return
        raise _Terminated()


END_ATTEMPTS = 20  # marking the run's end state retries a busy store for about END_ATTEMPTS x END_WAIT_S
END_WAIT_S = 0.5


def end_run(status: str) -> None:
    """`mlflow.end_run(status)`, retried while another connection holds the sqlite store's write lock."""
    for attempt in range(END_ATTEMPTS):
        try:
            with _SigtermGate.closed():
                mlflow.end_run(status=status)
            return
        except Exception as exc:  # sqlite3 / SQLAlchemy / MlflowException all carry sqlite's message
            if "database is locked" not in str(exc) or attempt == END_ATTEMPTS - 1:
                raise
            time.sleep(END_WAIT_S)


class Tracker:
    """Thin, explicit logging onto the active MLflow run (autolog is unvalidated on transformers 5).

    Each write holds a SIGTERM back until it has finished (see _SigtermGate).
    """

    def __init__(self, run_id: str, experiment_id: str, tracking_uri: str) -> None:
        self.run_id, self.experiment_id, self.tracking_uri = run_id, experiment_id, tracking_uri

    def metrics(self, prefix: str, values: Mapping[str, float], step: int | None = None) -> None:
        with _SigtermGate.closed():
            mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in values.items()}, step=step)

    def params(self, values: Mapping[str, Any]) -> None:
        with _SigtermGate.closed():
            mlflow.log_params({k: str(v)[:6000] for k, v in values.items()})

    def tags(self, values: Mapping[str, Any]) -> None:
        with _SigtermGate.closed():
            mlflow.set_tags({k: str(v) for k, v in values.items()})

    def dataset(self, frame: Any, name: str, source: str, context: str, targets: str) -> None:
        """Record a split as an MLflow dataset input (name, digest, schema, source, target column) of this run."""
        dataset = mlflow.data.from_pandas(frame, source=source, name=name, targets=targets)
        with _SigtermGate.closed():
            mlflow.log_input(dataset, context=context)

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with _SigtermGate.closed():
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path=artifact_path)


@contextmanager
def tracked_run(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Iterator[Tracker]:
    """Start the MLflow run, log config/params/tags, and end it FINISHED, FAILED or KILLED."""
    client, experiment_id = open_experiment(cfg)
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    run_name = cfg.tracking.run_name or f"{cfg.method.name}-{run_dir.name}"
    run = mlflow.start_run(run_name=run_name, parent_run_id=cfg.trial.parent_run_id)
    previous = {sig: signal.signal(sig, _SigtermGate.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        with _SigtermGate.closed():
            log_run_config(cfg, run_dir, overrides)
        yield Tracker(run.info.run_id, experiment_id, client.tracking_uri)
        status = RunStatus.to_string(RunStatus.FINISHED)
        if cfg.trial.study is not None:
            mlflow.set_tag("optuna.trial_state", "COMPLETE")
    except optuna.TrialPruned as exc:  # MLflow has no PRUNED status: KILLED, with the Optuna state as a tag
        status = RunStatus.to_string(RunStatus.KILLED)
        mlflow.set_tags({"optuna.trial_state": "PRUNED", "optuna.pruned": str(exc)})
        raise
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    except Exception as exc:
        mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
        if cfg.trial.study is not None:
            mlflow.set_tag("optuna.trial_state", "FAIL")
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        end_run(status)


def log_run_config(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> None:
    """The composed config (as params and as YAML), the overrides, and the tags that find the run."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    mlflow.log_params({k: str(v)[:6000] for k, v in flatten(container).items()})
    mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
    mlflow.log_text("\n".join(overrides) + "\n", "config/overrides.txt")
    mlflow.set_tags(
        {
            "experiment": cfg.tracking.experiment,
            "task": cfg.task.name,
            "method": cfg.method.name,
            "model": cfg.model.name_or_path if not cfg.model.from_package else cfg.model.from_package,
            "run_dir": str(run_dir),
        }
    )
    if cfg.trial.study is not None:  # a sweep trial: findable from the study and back
        mlflow.set_tags({"optuna.study": cfg.trial.study, "optuna.trial_number": cfg.trial.number})

"""MLflow tracking: one run per pipeline run, an embedded sqlite store by default, clean end states."""

from __future__ import annotations

import fcntl
import math
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import mlflow.data
import optuna
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

import pipeline
from pipeline.atomic import writable_dir
from pipeline.errors import PipelineError

SERVER_WAIT_S = 10.0  # how long a run waits for an http(s) tracking server or a database to answer before it fails
DATABASES = ("postgresql", "mysql")  # database stores whose drivers take connect_timeout (psycopg2 is in the lock)


def store_locations(cfg: Any) -> tuple[str, str | None]:
    """(tracking URI, artifact root for new experiments).

    The URI is `tracking.uri`, else MLflow's own `MLFLOW_TRACKING_URI`, else a sqlite store under
    paths.output_dir. Artifacts go to `tracking.artifact_root`, else beside a sqlite store (MLflow's default
    would be ./mlruns of whatever directory the command runs in), else where an http(s) server puts them.
    """
    uri = cfg.tracking.uri or pipeline.LAUNCH_TRACKING_URI
    field = store_field(cfg)
    if uri is None:
        out = writable_dir(Path(cfg.paths.output_dir), "paths.output_dir")
        uri = f"sqlite:///{out / 'mlflow.db'}"
    uri = str(uri)
    root = cfg.tracking.artifact_root
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
        root = root or str(db.parent / "mlartifacts")
        open_sqlite_store(uri, db, field)
    else:
        reach_server(uri, field)
    if root and "://" not in root:
        root = Path(root).expanduser().resolve().as_uri()
    return uri, root


def store_field(cfg: Any) -> str:
    """The setting a user gave the store with, for error lines: tracking.uri, else MLflow's environment variable."""
    return "MLFLOW_TRACKING_URI" if not cfg.tracking.uri and pipeline.LAUNCH_TRACKING_URI else "tracking.uri"


def error_reason(exc: BaseException) -> str:
    """The first line of an error, the driver's own where SQLAlchemy wraps one (its `orig`)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def existing_store(uri: str | None, output_dir: str, field: str) -> str:
    """The tracking URI of a store to read a past run from: `uri`, else $MLFLOW_TRACKING_URI, else the sqlite store
    under `output_dir`. Unlike store_locations it writes nothing: a sqlite file or database without MLflow's tables
    is an error naming `field` (MLflow's client would create them in it), and a server gets the same bounded wait."""
    uri = uri or pipeline.LAUNCH_TRACKING_URI or f"sqlite:///{Path(output_dir).expanduser().resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
        if not db.is_file():
            raise PipelineError(f"{field}: no MLflow store at {db} (no run has been tracked there)")
        problem = _not_mlflow_tables(f"sqlite:///file:{db}?mode=ro&uri=true")  # read-only: nothing is created
    else:
        reach_server(uri, field)
        problem = _not_mlflow_tables(uri) if is_database(uri) else None
    if problem:
        raise PipelineError(redact(f"{field}: {uri} is not an MLflow store ({problem})"))
    try:
        MlflowClient(uri)  # a scheme MLflow does not know, or its refused file store
    except (mlflow.exceptions.MlflowException, ImportError) as exc:
        raise store_error(uri, exc, field) from exc
    return uri


def _not_mlflow_tables(uri: str) -> str | None:
    """Why the database at `uri` holds no MLflow store (read only), or None when it has MLflow's tables."""
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
        has_runs = sqlalchemy.inspect(engine).has_table("experiments")
    except SQLAlchemyError as exc:
        return error_reason(exc)
    return None if has_runs else "no MLflow tables in it"


def is_database(uri: str) -> bool:
    """Whether `uri` names a database server of DATABASES (by its SQLAlchemy dialect, `postgresql+psycopg2` too)."""
    return uri.partition(":")[0].partition("+")[0] in DATABASES


def reach_server(uri: str, field: str) -> None:
    """The bounded wait for the server behind an http(s) or database URI (`field` names it in the error); nothing
    for a local store."""
    if uri.startswith(("http://", "https://")):
        wait_for_server(uri, SERVER_WAIT_S, field=field)
    elif is_database(uri):
        wait_for_database(uri, SERVER_WAIT_S, field)


# What each setting naming a store accepts, for the one-line error when the store cannot be opened
STORE_KINDS = {
    "tracking.uri": "expected sqlite:///PATH, an http(s) MLflow server or a database URL",
    "hydra.sweeper.storage": "expected a journal file path or a database URL (sqlite:///PATH, postgresql+psycopg2://...)",
}


def store_error(uri: str, exc: Exception, field: str = "tracking.uri") -> PipelineError:
    """A store that cannot be opened (a file that is not a database, MLflow 3's refused file store, a database that
    turns the login away, a driver that is not installed) as one line: the reason's first sentence, and what
    `field` accepts."""
    from pipeline.services import DRIVER

    reason = error_reason(exc).split(". ")[0]
    expected = STORE_KINDS.get(field, STORE_KINDS["tracking.uri"])
    if uri.startswith("postgresql://"):
        expected = f"write {DRIVER}://...: SQLAlchemy reads a bare postgresql:// as psycopg 3, which is not installed"
    return PipelineError(redact(f"{field}: cannot open {uri} ({reason}); {expected}"))  # MLflow repeats the URI


def open_sqlite_store(uri: str, db: Path, field: str = "tracking.uri") -> None:
    """Create and migrate the store under a file lock: sweep workers starting together would otherwise race
    through MLflow's schema migrations on the same file."""
    from sqlalchemy.exc import SQLAlchemyError  # MLflow's sqlite store is built on it

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.parent / f".{db.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            MlflowClient(uri).search_experiments(max_results=1)
    except OSError as exc:
        raise PipelineError(f"{field}: cannot open the sqlite store {db} ({exc.strerror or exc})") from exc
    except (mlflow.exceptions.MlflowException, SQLAlchemyError) as exc:  # a file that is not a database
        raise store_error(uri, exc, field) from exc


def wait_for_database(uri: str, wait_s: float, field: str = "tracking.uri") -> None:
    """Return once the database at `uri` takes a connection; fail after `wait_s` seconds with the last reason.

    MLflow's SQL store retries any failure to connect, a wrong password included, ten times over about 100 s,
    logging a warning with a traceback for each.
    """
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    deadline = time.monotonic() + wait_s
    while True:
        left = max(1, math.ceil(deadline - time.monotonic()))  # libpq and pymysql both take connect_timeout
        try:
            engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args={"connect_timeout": left})
        except (SQLAlchemyError, ImportError, ValueError) as exc:  # a malformed URL, a driver that is not installed
            raise store_error(uri, exc, field) from exc
        try:
            with engine.connect():
                return
        except SQLAlchemyError as exc:
            if time.monotonic() >= deadline:
                raise PipelineError(
                    redact(
                        f"{field}: no database took a connection at {uri} within {wait_s:.0f} s ({error_reason(exc)})"
                    )
                ) from exc
        time.sleep(0.5)


def wait_for_server(
    uri: str, wait_s: float, process: subprocess.Popen | None = None, field: str = "tracking.uri"
) -> None:
    """Return once the MLflow server at `uri` answers its /health check; fail after `wait_s` seconds, or as soon
    as `process` (the server, when we started it) has exited.

    MLflow's own client retries a dead server with backoff for minutes, with one traceback per retry.
    """
    url = f"{uri.rstrip('/')}/health"
    deadline = time.monotonic() + wait_s
    while True:
        if process is not None and process.poll() is not None:
            raise PipelineError(redact(f"{field}: the MLflow server for {uri} exited with code {process.returncode}"))
        try:
            with urllib.request.urlopen(url, timeout=max(1.0, min(5.0, deadline - time.monotonic()))) as reply:
                if reply.status == 200:
                    return
                problem = f"HTTP {reply.status}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise PipelineError(
                redact(
                    f"{field}: no MLflow server answered GET {url} within {wait_s:.0f} s ({problem}); "
                    f"start it (make services) or point {field} at a running one"
                )
            )
        time.sleep(0.5)


# Says an experiment holds training runs. MLflow 3.17's UI still opens it on the GenAI overview while the browser's
# toggle is on GenAI (seen in Chromium), so `make ui` also prints direct links (pipeline/ui.py).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def open_experiment(cfg: Any) -> tuple[MlflowClient, str]:
    """A client on the configured store and the id of `tracking.experiment`, created with its artifact location."""
    from sqlalchemy.exc import SQLAlchemyError

    uri, artifact_root = store_locations(cfg)
    name = cfg.tracking.experiment
    try:
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
    except (mlflow.exceptions.MlflowException, SQLAlchemyError, ImportError) as exc:
        if uri.startswith("sqlite:///"):  # opened already by store_locations: not the setting's fault (a busy store)
            raise
        raise store_error(uri, exc, store_field(cfg)) from exc
    if experiment is not None:
        if "mlflow.experimentKind" not in experiment.tags:  # made before the tag, or by hand: a user's choice stays
            client.set_experiment_tag(experiment.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return client, experiment.experiment_id
    try:
        return client, client.create_experiment(
            name, artifact_location=f"{artifact_root}/{name}" if artifact_root else None, tags=EXPERIMENT_KIND
        )
    except mlflow.exceptions.MlflowException:  # another worker created it in between (found on a shared server)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return client, experiment.experiment_id


# Short names of swept keys in run names (the key's last part otherwise): `lora r=8 lr=0.001`.
KNOB_NAMES = {"learning_rate": "lr", "target_modules": "targets", "num_virtual_tokens": "tokens"}


def default_run_name(cfg: Any) -> str:
    """The method and the values of the knobs the sweep varies (`lora r=8 lr=0.001 (trial 4)`), then any method knob
    set on the command line (`adapter bottleneck_size=32`), so runs that differ only by overrides read apart.
    Swept knobs are the keys of hydra.sweeper.params, the space of either sweeper."""
    from hydra.core.hydra_config import HydraConfig

    parts = [str(cfg.method.name)]
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        swept = list(hydra_cfg.sweeper.get("params") or {})
        overridden = [o.split("=", 1)[0].lstrip("+~") for o in hydra_cfg.overrides.task if "=" in o]
        for key in dict.fromkeys([*swept, *(k for k in overridden if k.startswith("method."))]):
            value = OmegaConf.select(cfg, key, default=None)
            if key == "method" or value is None:
                continue
            shown = f"{value:.2g}" if isinstance(value, float) else str(value)
            parts.append(f"{KNOB_NAMES.get(key.rsplit('.', 1)[-1], key.rsplit('.', 1)[-1])}={shown}")
    if cfg.trial.number is not None:
        parts.append(f"(trial {cfg.trial.number})")
    return " ".join(parts)


def redact(text: str) -> str:
    """`scheme://user:password@host` -> `scheme://user:***@host`: a storage URL's password stays out of MLflow."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


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


T = TypeVar("T")
UNIQUE_VIOLATIONS = ("UniqueViolation", "UNIQUE constraint", "Duplicate entry")  # PostgreSQL, sqlite, MySQL


def again_if_raced(write: Callable[[], T]) -> T:
    """`write()`, once more if another process inserted the same row at the same moment (workers of one study
    finishing together): MLflow's store inserts a tag or dataset row after looking for it, so the loser's insert
    violates the row's unique key. The row exists now, and the second write updates or links it."""
    try:
        return write()
    except mlflow.exceptions.MlflowException as exc:
        if not any(s in str(exc) for s in UNIQUE_VIOLATIONS):
            raise
        return write()


class Tracker:
    """Thin, explicit logging onto one MLflow run (autolog is unvalidated on transformers 5).

    Metrics, params and tags name the run, so a training worker process (pipeline.distributed) logs onto the run
    its parent started without making it its own. Datasets and artifacts go through the active run, which only
    the process that started the run has: a worker must not log them.
    Each write holds a SIGTERM back until it has finished (see _SigtermGate).
    """

    def __init__(self, run_id: str, experiment_id: str, tracking_uri: str) -> None:
        self.run_id, self.experiment_id, self.tracking_uri = run_id, experiment_id, tracking_uri
        self.client = MlflowClient(tracking_uri)

    def metrics(self, prefix: str, values: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(f"{prefix}{k}", float(v), now, step or 0) for k, v in values.items()]
        with _SigtermGate.closed():
            self.client.log_batch(self.run_id, metrics=batch)

    def params(self, values: Mapping[str, Any]) -> None:
        with _SigtermGate.closed():
            self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in values.items()])

    def tags(self, values: Mapping[str, Any]) -> None:
        with _SigtermGate.closed():
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in values.items()])

    def dataset(self, frame: Any, name: str, source: str, context: str, targets: str) -> None:
        """Record a split as an MLflow dataset input (name, digest, schema, source, target column) of this run."""
        dataset = mlflow.data.from_pandas(frame, source=source, name=name, targets=targets)
        with _SigtermGate.closed():
            # Workers of one sweep log the same split at once (the store keeps one row per name and digest).
            again_if_raced(lambda: mlflow.log_input(dataset, context=context))

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with _SigtermGate.closed():
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path=artifact_path)


class OffRankTracker(Tracker):
    """The tracker of a DDP worker other than rank 0: it logs nothing (rank 0 logs the run's training once)."""

    def metrics(self, prefix: str, values: Mapping[str, float], step: int | None = None) -> None:
        pass

    def params(self, values: Mapping[str, Any]) -> None:
        pass

    def tags(self, values: Mapping[str, Any]) -> None:
        pass

    def dataset(self, frame: Any, name: str, source: str, context: str, targets: str) -> None:
        pass

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass


def process_tags(pid: int) -> dict[str, str]:
    """Which process a run lives in: host, pid and the pid's start time (so a reused pid is not taken for it)."""
    return {"process.host": socket.gethostname(), "process.pid": str(pid), "process.start": process_start(pid)}


def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22); "" if it is not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # fields after the command name, which may contain spaces


def end_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the experiment's RUNNING runs whose process, on this host, is gone (a SIGKILL, a crashed
    machine's reboot, an OOM kill): nothing else would ever end them. Returns their run ids."""
    host = socket.gethostname()
    ended = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if tags.get("process.host") != host or "process.pid" not in tags:
            continue  # another machine's run, or one from before these tags: its host must judge it
        if process_start(int(tags["process.pid"])) == tags.get("process.start"):
            continue  # still running
        client.set_tag(
            run.info.run_id,
            "ended_by",
            f"found RUNNING with its process (pid {tags['process.pid']} on {host}) gone, by a later run in this store",
        )
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        ended.append(run.info.run_id)
    return ended


@contextmanager
def tracked_run(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Iterator[Tracker]:
    """Start the MLflow run, log config/params/tags, and end it FINISHED, FAILED or KILLED."""
    client, experiment_id = open_experiment(cfg)
    end_orphaned_runs(client, experiment_id)
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    run_name = cfg.tracking.run_name or default_run_name(cfg)
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
    mlflow.log_params({k: redact(str(v))[:6000] for k, v in flatten(container).items()})
    mlflow.log_text(redact(OmegaConf.to_yaml(cfg, resolve=True)), "config/config.yaml")
    mlflow.log_text(redact("\n".join(overrides) + "\n"), "config/overrides.txt")
    mlflow.set_tags(
        {
            "experiment": cfg.tracking.experiment,
            "task": cfg.task.name,
            "method": cfg.method.name,
            "model": cfg.model.name_or_path if not cfg.model.from_package else cfg.model.from_package,
            "run_dir": str(run_dir.resolve()),
            **process_tags(os.getpid()),
        }
    )
    if cfg.trial.study is not None:  # a sweep trial: findable from the study and back
        mlflow.set_tags({"optuna.study": cfg.trial.study, "optuna.trial_number": cfg.trial.number})

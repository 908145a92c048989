"""Where runs are stored (and their artifacts), a dead server failing fast, and ending a run surviving a busy store
and an interrupt that arrives in the middle of an MLflow write."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

import pipeline
from pipeline import tracking
from pipeline.config import Config
from pipeline.errors import PipelineError


def tracking_cfg(output_dir: Path, **fields) -> Config:
    cfg = OmegaConf.structured(Config)
    cfg.paths.output_dir = str(output_dir)
    for key, v in fields.items():
        cfg.tracking[key] = v
    return cfg


def test_another_sqlite_store_keeps_artifacts_beside_it_not_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "elsewhere" / "team.db"
    client, experiment_id = tracking.open_experiment(tracking_cfg(tmp_path / "out", uri=f"sqlite:///{store}"))
    location = client.get_experiment(experiment_id).artifact_location
    assert location == f"{(store.parent / 'mlartifacts').as_uri()}/default"
    explicit = tracking_cfg(tmp_path / "out", uri=f"sqlite:///{store}", artifact_root="arts", experiment="other")
    client, experiment_id = tracking.open_experiment(explicit)
    assert client.get_experiment(experiment_id).artifact_location == f"{(tmp_path / 'arts').as_uri()}/other"
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "out").exists()


def test_mlflow_tracking_uri_is_honoured_when_tracking_uri_is_unset(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "LAUNCH_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    assert tracking.store_locations(tracking_cfg(tmp_path / "out"))[0] == f"sqlite:///{tmp_path / 'env.db'}"
    cfg = tracking_cfg(tmp_path / "out", uri=f"sqlite:///{tmp_path / 'cfg.db'}")
    assert tracking.store_locations(cfg)[0] == f"sqlite:///{tmp_path / 'cfg.db'}"  # the config wins


def test_a_tracking_server_that_does_not_answer_fails_in_seconds_naming_tracking_uri(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(tracking, "SERVER_WAIT_S", 2.0)
    start = time.monotonic()
    with pytest.raises(PipelineError) as raised:
        tracking.store_locations(tracking_cfg(tmp_path, uri=f"http://127.0.0.1:{port}"))
    assert time.monotonic() - start < 6
    message = str(raised.value)
    assert message.startswith(f"tracking.uri: no MLflow server answered GET http://127.0.0.1:{port}/health within 2 s")
    assert "refused" in message and "\n" not in message


def test_reading_a_past_run_never_creates_a_store_and_waits_boundedly_for_a_server(tmp_path, monkeypatch, capsys):
    from pipeline.reproduce import main as reproduce_main

    missing = tmp_path / "nowhere" / "team.db"
    assert reproduce_main(["0123abc", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert capsys.readouterr().err == (
        f"error: --tracking-uri: no MLflow store at {missing} (no run has been tracked there)\n"
    )
    assert not missing.parent.exists()  # MLflow would have made the folder and an empty store in it
    other = tmp_path / "optuna.db"  # a database of something else: MLflow would have added its tables to it
    with closing(sqlite3.connect(other)) as db:
        db.execute("create table studies (id integer)")
        db.commit()
    assert reproduce_main(["0123abc", "--tracking-uri", f"sqlite:///{other}"]) == 2
    assert capsys.readouterr().err == (
        f"error: --tracking-uri: sqlite:///{other} is not an MLflow store (no MLflow tables in it)\n"
    )
    with closing(sqlite3.connect(other)) as db:
        assert db.execute("select name from sqlite_master").fetchall() == [("studies",)]
    monkeypatch.chdir(tmp_path)  # the default store, outputs/mlflow.db, is not there either
    with pytest.raises(PipelineError, match=r"^--tracking-uri: no MLflow store at .*outputs/mlflow\.db"):
        tracking.existing_store(None, "outputs", "--tracking-uri")
    assert not (tmp_path / "outputs").exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(tracking, "SERVER_WAIT_S", 1.0)
    with pytest.raises(PipelineError, match=r"^--tracking-uri: no MLflow server answered .* within 1 s"):
        tracking.existing_store(f"http://127.0.0.1:{port}", "outputs", "--tracking-uri")


def test_a_store_that_cannot_be_opened_is_one_line_naming_its_setting(tmp_path, monkeypatch):
    from pipeline.sweep import open_storage

    (tmp_path / "notes.txt").write_text("not a database\n")
    for uri, reason in (
        (f"sqlite:///{tmp_path / 'notes.txt'}", "(file is not a database); expected sqlite:///PATH"),
        (f"file://{tmp_path / 'mlruns'}", "(The filesystem tracking backend (e.g., './mlruns') is in maintenance mode"),
        ("postgresql://me:secret@127.0.0.1:9/db", "(No module named 'psycopg'); write postgresql+psycopg2://"),
        ("foo://me:secret@host/db", "(Model registry functionality is unavailable; got unsupported URI 'foo://me:***@"),
    ):
        with pytest.raises(PipelineError) as raised:
            tracking.open_experiment(tracking_cfg(tmp_path / "out", uri=uri))
        message = str(raised.value)
        assert message.startswith(f"tracking.uri: cannot open {uri.replace(':secret@', ':***@')} {reason}"), message
        assert "\n" not in message and "secret" not in message
    with pytest.raises(PipelineError, match=r"^hydra\.sweeper\.storage: cannot open .*\(file is not a database\)"):
        open_storage(f"sqlite:///{tmp_path / 'notes.txt'}", tmp_path / "journal")
    with socket.socket() as s:  # a database port nothing listens on: a bounded wait, not MLflow's 100 s of retries
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(tracking, "SERVER_WAIT_S", 1.0)
    for run in (
        lambda url: tracking.open_experiment(tracking_cfg(tmp_path / "out", uri=url)),
        lambda url: open_storage(url, tmp_path / "journal"),
    ):
        start = time.monotonic()
        with pytest.raises(PipelineError, match=r"no database took a connection at .*:\*\*\*@.* within 1 s .*refused"):
            run(f"postgresql+psycopg2://me:secret@127.0.0.1:{port}/db")
        assert time.monotonic() - start < 8


def test_sigterm_during_a_write_is_raised_once_the_write_has_finished():
    previous = signal.signal(signal.SIGTERM, tracking._SigtermGate.handle)
    finished = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with tracking._SigtermGate.closed():
                os.kill(os.getpid(), signal.SIGTERM)  # handled at once, inside the "write"
                finished.append("write")
        assert finished == ["write"] and not tracking._SigtermGate.pending
        with pytest.raises(KeyboardInterrupt):  # outside a write it interrupts at once
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_ending_a_run_retries_a_locked_store_and_gives_up_on_other_errors(monkeypatch):
    calls = []

    def flaky_end_run(status):
        calls.append(status)
        if len(calls) < 3:
            raise mlflow.exceptions.MlflowException("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(mlflow, "end_run", flaky_end_run)
    monkeypatch.setattr(tracking, "END_WAIT_S", 0.0)
    tracking.end_run("KILLED")
    assert calls == ["KILLED"] * 3

    def broken_end_run(status):
        raise mlflow.exceptions.MlflowException("no such run")

    monkeypatch.setattr(mlflow, "end_run", broken_end_run)
    with pytest.raises(mlflow.exceptions.MlflowException, match="no such run"):
        tracking.end_run("KILLED")


def test_runs_whose_process_died_are_marked_killed_by_the_next_run(tmp_path):
    client, experiment_id = tracking.open_experiment(tracking_cfg(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host, me = socket.gethostname(), tracking.process_tags(os.getpid())
    tags = {
        "dead": {"process.host": host, "process.pid": dead.stdout.strip(), "process.start": "1"},
        "reused": {**me, "process.start": "1"},  # our pid, but not the process that started that run
        "alive": me,
        "other": {**me, "process.host": "another-machine", "process.start": "1"},
        "untagged": {},
    }
    runs = {name: client.create_run(experiment_id, run_name=name).info.run_id for name in tags}
    for name, values in tags.items():
        client.log_batch(runs[name], tags=[RunTag(k, v) for k, v in values.items()])
    assert sorted(tracking.end_orphaned_runs(client, experiment_id)) == sorted([runs["dead"], runs["reused"]])
    run = client.get_run(runs["dead"])
    assert run.info.status == "KILLED" and f"pid {dead.stdout.strip()} on {host}) gone" in run.data.tags["ended_by"]
    assert {client.get_run(runs[n]).info.status for n in ("alive", "other", "untagged")} == {"RUNNING"}


def test_an_output_directory_that_cannot_be_written_names_paths_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(PipelineError, match=r"^paths\.output_dir: cannot create .*a-file/out \("):
        tracking.store_locations(tracking_cfg(blocker / "out"))


def test_a_storage_urls_password_is_redacted_and_other_urls_are_left_alone():
    line = "trial.storage=postgresql+psycopg2://pipeline:s3cr3t-pw@127.0.0.1:5432/optuna"
    assert tracking.redact(line) == "trial.storage=postgresql+psycopg2://pipeline:***@127.0.0.1:5432/optuna"
    for untouched in ("sqlite:////abs/mlflow.db", "http://127.0.0.1:5000", "postgresql+psycopg2://u@h:5432/db"):
        assert tracking.redact(untouched) == untouched


def test_a_dataset_or_experiment_another_worker_just_created_is_reused(tmp_path, monkeypatch):
    """Sweep workers sharing a server race to create the experiment and to log the same split (seen on
    PostgreSQL: the loser's insert raised UniqueViolation and failed its trial)."""
    real_create = MlflowClient.create_experiment

    def lost_race(self, name, **kwargs):  # the other worker's create lands first
        real_create(self, name, **kwargs)
        raise mlflow.exceptions.MlflowException(f"Experiment(name={name}) already exists.")

    monkeypatch.setattr(MlflowClient, "create_experiment", lost_race)
    client, experiment_id = tracking.open_experiment(tracking_cfg(tmp_path / "out", experiment="raced"))
    assert client.get_experiment_by_name("raced").experiment_id == experiment_id

    calls = []
    real_log_input = mlflow.log_input

    def duplicate_once(dataset, context=None):
        calls.append(context)
        if len(calls) == 1:
            raise mlflow.exceptions.MlflowException("(psycopg2.errors.UniqueViolation) duplicate key value")
        return real_log_input(dataset, context=context)

    monkeypatch.setattr(mlflow, "log_input", duplicate_once)
    mlflow.set_tracking_uri(client.tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        tracker = tracking.Tracker(run.info.run_id, experiment_id, client.tracking_uri)
        tracker.dataset(pd.DataFrame({"text": ["a"], "label": [0]}), "train", "x.csv", "train", "label")
    assert calls == ["train", "train"] and client.get_run(run.info.run_id).inputs.dataset_inputs


def test_a_write_that_lost_an_insert_race_is_made_once_more_and_other_errors_pass_through():
    import mlflow
    import pytest

    from pipeline.tracking import again_if_raced

    calls = []

    def write():
        calls.append(1)
        if len(calls) == 1:  # what sqlite says when another worker inserted the same tag first
            raise mlflow.exceptions.MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: tags.key")
        return "written"

    assert again_if_raced(write) == "written" and len(calls) == 2

    def broken():
        raise mlflow.exceptions.MlflowException("RESOURCE_DOES_NOT_EXIST: run not found")

    with pytest.raises(mlflow.exceptions.MlflowException, match="not found"):
        again_if_raced(broken)


def test_a_single_runs_name_shows_the_method_knobs_set_on_its_command_line(compose_config):
    """Two runs that differ only by an override read apart in the runs list (both were `adapter`)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from tests.conftest import CONF_DIR

    compose_config([])  # registers the structured configs
    overrides = ["method=adapter", "method.bottleneck_size=32", "method.learning_rate=1e-3", "train.epochs=2"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        assert tracking.default_run_name(cfg) == "adapter bottleneck_size=32 lr=0.001"  # train.* is not a method knob
    finally:
        HydraConfig.instance().cfg = None

"""`make services`: a real PostgreSQL cluster and MLflow server on 127.0.0.1 that a study and a run can use, whose
password is never printed, and that stop cleanly. Needs PostgreSQL's server binaries (Debian: postgresql-15);
about a minute, so behind its own marker: `pytest -m services` (run by .ci/run)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from pipeline import services
from pipeline.sweep import OVER_BUDGET_ATTR, RETRY_OF_ATTR, WORKER_ATTR, open_storage
from pipeline.tracking import wait_for_database
from tests.conftest import cli_env
from tests.test_cli import REPO
from tests.test_sweeper import SEARCH, sweep_command

pytestmark = pytest.mark.services


def test_a_study_and_a_tracked_run_use_the_services_and_the_password_stays_out_of_sight(running_services, monkeypatch):
    root, console = running_services
    overrides = (root / "overrides.txt").read_text().split()
    storage = next(o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweeper.storage="))
    tracking = next(o.split("=", 1)[1] for o in overrides if o.startswith("tracking.uri="))
    assert storage.startswith("postgresql+psycopg2://postgres@127.0.0.1:") and tracking.startswith("http://127.0.0.1:")
    password = (root / "password").read_text().strip()
    assert password not in console and password not in (root / "overrides.txt").read_text()
    assert oct((root / "password").stat().st_mode)[-3:] == "600" and oct((root / "pgpass").stat().st_mode)[-3:] == "600"

    monkeypatch.setenv("PGPASSFILE", str(root / "pgpass"))  # what the printed `export` line says
    start = time.monotonic()
    wait_for_database(storage, 10.0, "hydra.sweeper.storage")  # a database that takes the connection: no wait
    assert time.monotonic() - start < 5
    study = optuna.create_study(study_name="probe", storage=open_storage(storage, root / "unused"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="probe", storage=storage).trials) == 2

    client = MlflowClient(tracking)
    experiment = client.create_experiment("probe")
    run = client.create_run(experiment).info.run_id
    (root / "note.txt").write_text("through the server\n")
    client.log_artifact(run, str(root / "note.txt"))  # proxied: the server writes it under its destination
    fetched = client.download_artifacts(run, "note.txt", str(root))
    assert Path(fetched).read_text() == "through the server\n"
    assert list((root / "mlartifacts").rglob("note.txt"))
    assert password not in (root / "logs" / "mlflow.log").read_text()


def test_three_workers_share_a_postgres_study_and_a_killed_workers_trial_is_rerun(
    running_services, tiny_models, synthetic_csv, tmp_path, monkeypatch
):
    """Three sweep processes on one study in PostgreSQL, tracked on the MLflow server; one is SIGKILLed in the
    middle of a trial. A live worker (or else a rerun of the same command) fails that trial, runs its parameters
    again and ends the study with n_trials finished trials; MLflow's runs match Optuna's trials one to one."""
    root, _ = running_services
    if not (root / "state.json").exists():
        pytest.skip("the services were stopped by an earlier test of this module")
    storage, tracking = (o.split("=", 1)[1] for o in (root / "overrides.txt").read_text().split())
    search = tmp_path / "conf" / "hparams_search"
    search.mkdir(parents=True)
    (search / "tiny.yaml").write_text(
        SEARCH.replace("study_name: tiny", "study_name: shared").replace("n_trials: 5", "n_trials: 6")
    )
    command = sweep_command(
        tmp_path / "conf",
        tiny_models,
        synthetic_csv,
        tmp_path,
        f"hydra.sweeper.storage={storage}",
        f"tracking.uri={tracking}",
    )
    monkeypatch.setenv("PGPASSFILE", str(root / "pgpass"))  # for this process's own look at the study
    env = cli_env(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]  # the live workers' consoles, read at the end
    workers = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.PIPE, text=True)
        for log in logs
    ]
    victim = workers[0]
    client = MlflowClient(tracking)
    deadline = time.monotonic() + 300
    killed = None
    while killed is None and time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
        except KeyError:  # not created yet
            trials = []
        mine = [
            t.number
            for t in trials
            if t.state == TrialState.RUNNING and t.user_attrs.get(WORKER_ATTR, "").endswith(f":{victim.pid}")
        ]
        experiment = client.get_experiment_by_name("tests")
        if mine and experiment:  # the trial's MLflow run has started: it is in the middle of its work
            tracked = client.search_runs([experiment.experiment_id], f"tags.`optuna.trial_number` = '{mine[0]}'")
            if tracked and tracked[0].data.tags.get("optuna.study") == "shared":
                time.sleep(2)
                victim.kill()
                killed = mine[0]
        time.sleep(0.5)
    assert killed is not None, "the first worker never started a trial"
    for worker in workers[1:]:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
    victim.wait(timeout=30)
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # A live worker finds the dead one's trial at its next batch; a rerun, if none was left to.
    console = "".join(log.read_text() for log in logs[1:]) + rerun.stdout + rerun.stderr
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    dead = trials[numbers.index(killed)]
    assert dead.state == TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == killed]
    assert f"trial {killed} was left RUNNING by a dead worker: failed and queued again" in console
    assert len(retries) == 1 and retries[0].params == dead.params and retries[0].state.is_finished()
    ran = [t for t in trials if OVER_BUDGET_ATTR not in t.user_attrs]  # the others lost a race for a slot, unrun
    finished = [t for t in ran if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    states = [(t.number, t.state.name, t.user_attrs.get("error", "")[:300]) for t in trials]
    assert len(finished) == 6 and all(t.state.is_finished() for t in trials), states  # exactly n_trials=6

    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parent = next(r for r in runs if r.data.tags.get("kind") == "study" and r.data.tags.get("optuna.study") == "shared")
    children = {
        int(r.data.tags["optuna.trial_number"]): r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert sorted(children) == sorted(t.number for t in ran)  # a trial failed over budget never started a run
    expected = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "KILLED"}
    for t in ran:
        assert children[t.number].info.status == expected[t.state], (t.number, t.state, children[t.number].info.status)
    assert "ended_by" in children[killed].data.tags  # marked KILLED when next seen, saying how
    some = next(r for n, r in children.items() if trials[numbers.index(n)].state == TrialState.COMPLETE)
    artifacts = [a.path for a in client.list_artifacts(some.info.run_id)]
    assert artifacts, "a child run's artifacts are listed through the server"
    manifest = client.download_artifacts(some.info.run_id, "manifest.json", str(tmp_path))
    assert json.loads(Path(manifest).read_text())["git"]


def test_services_bind_to_localhost_only_and_stop(running_services):
    root, _ = running_services
    state = json.loads((root / "state.json").read_text())
    for port in (state["pg_port"], state["mlflow_port"]):
        outside = next(
            (a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET) if a[4][0] != "127.0.0.1"),
            None,
        )
        if outside:  # nothing answers on the machine's other address
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((outside, port)) != 0
    again = subprocess.run(
        [sys.executable, "-m", "pipeline.services", "start", "--root", str(root)],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and (root / "overrides.txt").read_text().split()[0] in again.stdout  # reused
    assert services.stop(root) and not (root / "state.json").exists()
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", state["pg_port"])) != 0

"""`make services`: a real PostgreSQL cluster and MLflow server on 127.0.0.1 that a study and a run can use, whose
password is never printed, and that stop cleanly. Needs PostgreSQL's server binaries (Debian: postgresql-15);
about a minute, so behind its own marker: `pytest -m services` (run by .ci/run)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from pipeline import services
from pipeline.sweep import open_storage
from tests.conftest import cli_env
from tests.test_cli import REPO

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def running():
    """Services started by the CLI, as `make services` does, in a folder the postgres user can reach."""
    root = Path(tempfile.mkdtemp(prefix="services-", dir="/tmp"))
    root.chmod(0o755)
    command = [sys.executable, "-m", "pipeline.services", "start", "--root", str(root)]
    result = subprocess.run(command, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    try:
        assert result.returncode == 0, result.stderr[-2000:]
        yield root, result.stdout
    finally:
        subprocess.run([*command[:3], "stop", "--root", str(root)], cwd=REPO, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def test_a_study_and_a_tracked_run_use_the_services_and_the_password_stays_out_of_sight(running, monkeypatch):
    root, console = running
    overrides = (root / "overrides.txt").read_text().split()
    storage = next(o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweeper.storage="))
    tracking = next(o.split("=", 1)[1] for o in overrides if o.startswith("tracking.uri="))
    assert storage.startswith("postgresql+psycopg2://postgres@127.0.0.1:") and tracking.startswith("http://127.0.0.1:")
    password = (root / "password").read_text().strip()
    assert password not in console and password not in (root / "overrides.txt").read_text()
    assert oct((root / "password").stat().st_mode)[-3:] == "600" and oct((root / "pgpass").stat().st_mode)[-3:] == "600"

    monkeypatch.setenv("PGPASSFILE", str(root / "pgpass"))  # what the printed `export` line says
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


def test_services_bind_to_localhost_only_and_stop(running):
    root, _ = running
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

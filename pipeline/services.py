"""Throwaway local services for shared sweeps: a PostgreSQL cluster (Optuna's RDB storage, MLflow's store) and an
MLflow tracking server on it with artifact proxying, both on 127.0.0.1 (`make services`, `make services-stop`).

The database password is generated once, kept in a libpq password file (mode 0600) and never printed: the
printed overrides carry no password, and commands find it through PGPASSFILE, as every libpq client does.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipeline.atomic import writable_dir, write_json, write_text
from pipeline.errors import PipelineError

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"  # Debian's layout; PG_BIN overrides it
START_WAIT_S = 60  # for PostgreSQL to accept connections and for the MLflow server to answer /health
USER = "postgres"
DATABASES = ("optuna", "mlflow")
DRIVER = "postgresql+psycopg2"  # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not in the lock


def pg_bin() -> Path:
    """The PostgreSQL server binaries: $PG_BIN, else the newest Debian install."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(
        Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )
    if not found:
        raise PipelineError(
            f"PG_BIN: no PostgreSQL server binaries at {PG_BIN_GLOB} (Debian: apt-get install postgresql-15)"
        )
    return found[-1]


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run the command as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], what: str, **kwargs) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=START_WAIT_S, **kwargs)
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise PipelineError(f"services: {what} failed ({reason[0]})")


def start(root: Path) -> list[str]:
    """Start (or find running) PostgreSQL and the MLflow server under `root`; return the two overrides."""
    root = writable_dir(root, "--root")
    state_path = root / "state.json"
    if state_path.exists() and _alive(json.loads(state_path.read_text())):
        return (root / "overrides.txt").read_text().split()
    data, logs, artifacts = root / "pg", root / "logs", root / "mlartifacts"
    for folder in (logs, artifacts):
        folder.mkdir(exist_ok=True)
    password_file = root / "password"
    if not password_file.exists():
        write_text(password_file, secrets.token_urlsafe(24))
    password_file.chmod(0o600)
    password = password_file.read_text().strip()
    bins = pg_bin()
    if not (data / "PG_VERSION").exists():
        _init_cluster(bins, data, password)
    pg_port, mlflow_port = _free_port(), _free_port()
    pg_log = logs / "postgres.log"
    pg_log.touch()
    if os.geteuid() == 0:
        shutil.chown(pg_log, USER)
    options = f"-c listen_addresses=127.0.0.1 -p {pg_port} -c unix_socket_directories=''"
    _run(
        _as_postgres(
            [
                str(bins / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(pg_log),
                "-w",
                "-t",
                str(START_WAIT_S),
                "-o",
                options,
                "start",
            ]
        ),
        f"starting PostgreSQL on 127.0.0.1:{pg_port} (log: {pg_log})",
    )
    passfile = root / "pgpass"
    write_text(passfile, f"127.0.0.1:{pg_port}:*:{USER}:{password}\n")
    passfile.chmod(0o600)
    _create_databases(pg_port, password)
    env = {**os.environ, "PGPASSFILE": str(passfile)}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(logs / "mlflow.log", "ab") as log:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                f"{DRIVER}://{USER}@127.0.0.1:{pg_port}/mlflow",
                "--artifacts-destination",
                str(artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state = {"pg_port": pg_port, "mlflow_port": mlflow_port, "mlflow_pgid": server.pid, "data": str(data)}
    write_json(state_path, state)
    from pipeline.tracking import wait_for_server

    try:
        wait_for_server(f"http://127.0.0.1:{mlflow_port}", START_WAIT_S, server)
    except PipelineError as exc:
        stop(root)
        raise PipelineError(f"services: the MLflow server did not start ({exc}; log: {logs / 'mlflow.log'})") from exc
    overrides = [
        f"hydra.sweeper.storage={DRIVER}://{USER}@127.0.0.1:{pg_port}/optuna",
        f"tracking.uri=http://127.0.0.1:{mlflow_port}",
    ]
    write_text(root / "overrides.txt", "".join(f"{o}\n" for o in overrides))
    return overrides


def _init_cluster(bins: Path, data: Path, password: str) -> None:
    """initdb with scram-sha-256 for every connection; the superuser's password passes through a 0600 file."""
    data.mkdir(parents=True, exist_ok=True)
    pwfile = data.parent / ".initdb-password"
    write_text(pwfile, password + "\n")
    pwfile.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(data, USER)
        shutil.chown(pwfile, USER)
    try:
        _run(
            _as_postgres(
                [
                    str(bins / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                ]
            ),
            f"initdb of {data}",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _create_databases(port: int, password: str) -> None:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=port, user=USER, password=password, dbname="postgres", connect_timeout=10
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database")
        existing = {row[0] for row in cursor.fetchall()}
        for name in DATABASES:
            if name not in existing:
                cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


def _alive(state: dict) -> bool:
    try:
        os.killpg(state["mlflow_pgid"], 0)
    except (ProcessLookupError, PermissionError):
        return False
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", state["pg_port"])) == 0


def stop(root: Path) -> bool:
    """Stop the MLflow server (its whole process group: its job workers too) and PostgreSQL; keep their data."""
    root = root.resolve()
    state_path = root / "state.json"
    if not state_path.exists():
        return False
    state = json.loads(state_path.read_text())
    try:
        os.killpg(state["mlflow_pgid"], signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            os.killpg(state["mlflow_pgid"], 0)
            time.sleep(0.3)
        os.killpg(state["mlflow_pgid"], signal.SIGKILL)
    except ProcessLookupError:
        pass
    if (Path(state["data"]) / "postmaster.pid").exists():
        _run(
            _as_postgres([str(pg_bin() / "pg_ctl"), "-D", state["data"], "-m", "fast", "-w", "stop"]),
            "stopping PostgreSQL",
        )
    state_path.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--root", type=Path, default=Path("outputs/services"))
    args = parser.parse_args(argv)
    try:
        if args.action == "stop":
            print("services stopped" if stop(args.root) else f"services: none running under {args.root}")
            return 0
        overrides = start(args.root)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = args.root.resolve()
    print("PostgreSQL and the MLflow server are running on 127.0.0.1. Point a command at them with:")
    print(f"  export PGPASSFILE={root / 'pgpass'}   # the database password (0600; never printed)")
    print(f"  python -m pipeline --multirun ... {' '.join(overrides)}")
    print(f"(the overrides are in {root / 'overrides.txt'}; stop with `make services-stop`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

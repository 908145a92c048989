"""Faults at the moments that matter: SIGTERM and SIGKILL during a step, during a checkpoint write and during a
stage's rename, then `resume=true` reaches the same final metrics as a run that was never interrupted (a sweep
killed in its last trial: tests/test_sweeper.py). Each case is two CLI runs (6 cases, ~100 s here): make test-slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import cli_env, tiny_overrides

REPO = Path(__file__).resolve().parent.parent
STAGES = "stages=[split,tokenize,train,evaluate]"
pytestmark = pytest.mark.slow


def pipeline(*args: str, driver: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS`, or the fault driver's copy of it that signals itself at one moment."""
    command = [sys.executable, "tests/fault_driver.py", *driver] if driver else [sys.executable, "-m", "pipeline"]
    return subprocess.run(
        [*command, *args],
        cwd=REPO,
        env=cli_env(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
        timeout=600,
    )


def evaluate_scores(run_dir: Path) -> dict[str, float]:
    """The run's test metrics from its summary, without the per-run timing and cache flags."""
    scores = json.loads((run_dir / "summary.json").read_text())["stages"]["evaluate"]
    return {k: v for k, v in scores.items() if k not in {"cache_hit", "wall_s"}}


def runs(out: Path) -> list[mlflow.entities.Run]:
    """Every run in the tests experiment of `out`'s store."""
    mlflow.set_tracking_uri(f"sqlite:///{out.resolve() / 'mlflow.db'}")
    client = MlflowClient()
    return client.search_runs([client.get_experiment_by_name("tests").experiment_id])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_models, synthetic_csv) -> tuple[list[str], Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("faults")
    overrides = [*tiny_overrides(tiny_models["bert"], synthetic_csv, out), STAGES]
    done = pipeline(*overrides, f"hydra.run.dir={out / 'reference'}")
    assert done.returncode == 0, done.stderr[-3000:]
    return overrides, out, evaluate_scores(out / "reference")


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("moment", ["step", "checkpoint", "rename"])
def test_a_run_killed_at_any_moment_resumes_to_the_same_metrics(uninterrupted, moment, signal_name):
    overrides, out, expected = uninterrupted
    run_dir = out / f"{moment}-{signal_name}"
    killed = pipeline(*overrides, f"hydra.run.dir={run_dir}", driver=(moment, signal_name))
    assert killed.returncode == (130 if signal_name == "SIGTERM" else -9), killed.stderr[-3000:]
    assert not (run_dir / "train" / "model").exists()
    if signal_name == "SIGTERM":
        assert "resume=true" in killed.stderr and "Traceback" not in killed.stderr
    resumed = pipeline(*overrides, f"hydra.run.dir={run_dir}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert evaluate_scores(run_dir) == expected
    assert not [p for p in run_dir.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    if moment == "checkpoint":  # the half-written checkpoint is dropped and the one before it used
        assert "was interrupted while being written: removed" in resumed.stdout + resumed.stderr
    if moment == "rename" and signal_name == "SIGKILL":
        assert "left by an interrupted write" in resumed.stdout + resumed.stderr
    ours = sorted(
        (r.info.status, r.data.tags.get("resumed_from_checkpoint"))
        for r in runs(out)
        if r.data.tags.get("run_dir") == str(run_dir)
    )
    # a SIGKILLed run is ended KILLED by the next run in the store; the resumed one continued from a checkpoint
    assert ours[0] == ("FINISHED", "True") and ours[1][0] == "KILLED", ours

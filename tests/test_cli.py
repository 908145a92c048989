"""`python -m pipeline` as a user runs it: exit codes, one-line errors, FAILED runs, nothing half-written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipeline.config import Stage
from pipeline.runner import STAGES, run_pipeline
from tests.conftest import cli_env, tiny_overrides

REPO = Path(__file__).resolve().parent.parent


def run_cli(*overrides: str) -> subprocess.CompletedProcess:
    env = cli_env(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def last_run(output_dir: Path):
    mlflow.set_tracking_uri(f"sqlite:///{output_dir.resolve() / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("tests")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("data.path={missing}", "data.path: file"),
        # ~20 s each: the others run with `make test-slow`, beside the cases of tests/test_bad_inputs.py
        pytest.param(
            "method.target_modules=[query,nope]",
            "method.target_modules: ['nope'] not found in BertForSequenceClassification",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "train.optim=adamw_nope",
            "train.optim: 'adamw_nope' is not a transformers optimizer",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "model.max_length=100000",
            "model.max_length: 100000 is above the model's position limit; expected at most",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_a_failed_run(tmp_path, tiny_models, synthetic_csv, override, field):
    out = tmp_path / "out"
    overrides = tiny_overrides(tiny_models["bert"], synthetic_csv, out)
    overrides.append(override.format(missing=tmp_path / "missing.csv"))
    result = run_cli(*overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and field in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    run = last_run(out)
    assert run.info.status == "FAILED"
    assert field in run.data.tags["error"]
    # Only complete files: Hydra's config and log, and the manifest (written atomically before any stage).
    assert {p.name for p in (tmp_path / "run").iterdir()} <= {".hydra", "__main__.log", "manifest.json"}
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["git"]


def test_unknown_method_fails_at_compose_time_listing_the_options(tmp_path):
    result = run_cli("method=nope", f"paths.output_dir={tmp_path}")
    assert result.returncode == 2 and result.stderr.startswith("error: method: no option 'nope'; expected one of ")
    assert "lora" in result.stderr and len(result.stderr.strip().splitlines()) == 1  # Hydra's report, on one line
    typo = run_cli("train.max_stps=5", f"paths.output_dir={tmp_path}")
    assert typo.returncode == 2 and typo.stderr.startswith("error: train.max_stps: Could not override")
    assert len(typo.stderr.strip().splitlines()) == 1


def test_services_root_that_cannot_be_made_is_one_line_before_any_server_starts(tmp_path, capsys):
    from pipeline.services import main as services_main

    (tmp_path / "a_file").write_text("not a directory\n")
    root = tmp_path / "a_file" / "services"
    assert services_main(["start", "--root", str(root)]) == 2
    assert capsys.readouterr().err == f"error: --root: cannot create {root} (Not a directory)\n"


def test_help_with_a_bad_override_says_what_a_run_would(tmp_path):
    """The same one line as the run itself, not Hydra's report with its search path squeezed onto it."""
    for override in ("method=nope", "train.epochs=("):
        run, helped = run_cli(override, f"paths.output_dir={tmp_path}"), run_cli(override, "--help")
        assert helped.returncode == run.returncode == 2
        assert helped.stderr == run.stderr and len(helped.stderr.strip().splitlines()) == 1, helped.stderr
        assert "search path" not in helped.stderr


def test_a_run_or_sweep_directory_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("not a directory\n")
    for flags, key, where in (
        ([], "paths.output_dir", "a_file"),  # the run directory is made under it by default
        ([], "hydra.run.dir", "a_file/run"),
        (["--multirun"], "hydra.sweep.dir", "a_file"),
    ):
        result = run_cli(*flags, f"{key}={tmp_path / where}", "stages=[split]")
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.startswith(f"error: {key}: cannot make the directory {tmp_path / where}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_crash_mid_pipeline_keeps_earlier_outputs_and_leaves_no_partial_one(
    tmp_path, tiny_models, synthetic_csv, compose_config, monkeypatch
):
    from pipeline.atomic import atomic_dir

    def crashing_train(ctx):
        with atomic_dir(ctx.layout.model) as partial:
            (partial / "adapter_model.safetensors").write_bytes(b"half")
            raise RuntimeError("simulated crash during training")

    monkeypatch.setitem(STAGES, Stage.train, crashing_train)
    out = tmp_path / "out"
    cfg = compose_config(tiny_overrides(tiny_models["bert"], synthetic_csv, out))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_pipeline(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "tokenize" / "dataset").is_dir()
    assert not (tmp_path / "run" / "train" / "model").exists()
    assert not list((tmp_path / "run").rglob(".*tmp-*"))
    assert last_run(out).info.status == "FAILED"


def test_an_interrupt_ends_the_run_killed_not_running(
    tmp_path, tiny_models, synthetic_csv, compose_config, monkeypatch
):
    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(STAGES, Stage.tokenize, interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(compose_config(tiny_overrides(tiny_models["bert"], synthetic_csv, out)), tmp_path / "run")
    assert last_run(out).info.status == "KILLED"


def test_sigterm_during_training_marks_killed_and_keeps_the_checkpoint(tmp_path, tiny_models, synthetic_csv):
    out, run_dir = tmp_path / "out", tmp_path / "run"
    overrides = [
        *tiny_overrides(tiny_models["bert"], synthetic_csv, out),
        "train.max_steps=5000",
        "train.eval_steps=10",
    ]
    env = cli_env(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((run_dir / "train" / "checkpoints").glob("checkpoint-*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "resume=true" in stderr
    assert last_run(out).info.status == "KILLED"
    assert list((run_dir / "train" / "checkpoints").glob("checkpoint-*"))
    assert not (run_dir / "train" / "model").exists()

"""`train.nproc_per_node=2`: the train stage runs DDP in two torchrun processes (gloo on CPU) and reaches what one
process reaches; only rank 0 logs to MLflow and writes outputs, and every other stage runs once."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipeline.methods import registered_methods
from tests.conftest import cli_env, generative_overrides, tiny_overrides
from tests.test_cli import REPO, last_run, run_cli

STAGES = "stages=[split,tokenize,train,evaluate]"


def without_dropout(model_dir: Path, out: Path) -> Path:
    """The tiny model with its dropout off: with dropout, one process of 16 rows and two of 8 draw other masks."""
    shutil.copytree(model_dir, out)
    config = json.loads((out / "config.json").read_text())
    config.update({k: 0.0 for k in config if k.endswith("dropout_prob") or k in ("attention_dropout", "dropout")})
    (out / "config.json").write_text(json.dumps(config))
    return out


def four_stages(overrides: list[str], out: Path, *extra: str) -> tuple[dict, object, str]:
    """One CLI run of split, tokenize, train and evaluate; (its summary.json, its MLflow run, its console)."""
    done = run_cli(
        *overrides,
        STAGES,
        "method=lora",
        "method.dropout=0",
        "train.batch_size=16",
        "train.max_steps=40",
        "train.eval_steps=20",
        "train.logging_steps=1",
        f"paths.output_dir={out}",
        f"hydra.run.dir={out / 'run'}",
        *extra,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    return json.loads((out / "run" / "summary.json").read_text()), last_run(out), done.stdout + done.stderr


def step_losses(run_dir: Path) -> list[float]:
    history = json.loads((run_dir / "train" / "result.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(params=["classification", pytest.param("causal_lm", marks=pytest.mark.slow)])
def task_overrides(request, tiny_models, tiny_generative, synthetic_csv, tmp_path) -> tuple[list[str], str, int]:
    """(overrides of a run on a tiny model without dropout, its headline test metric, its test rows)."""
    if request.param == "classification":
        model = without_dropout(tiny_models["bert"], tmp_path / "model")
        return tiny_overrides(model, synthetic_csv, tmp_path / "unused"), "accuracy", 36
    model = without_dropout(tiny_generative["llama"], tmp_path / "model")
    overrides = generative_overrides(model, synthetic_csv, tmp_path / "unused", "llama")
    return [*overrides, "task.prompt='topic ? {text}'", "task.target='{label}'"], "rougeL", 36


def test_two_ddp_processes_reach_what_one_process_reaches(task_overrides, tmp_path):
    """Same global batch (16 = 2 x 8) of the same rows in the same order, gradients averaged over the ranks: without
    dropout the two runs differ only by float rounding (gloo sums the halves' gradients in another order than one
    process sums 16 rows). So every step's loss must agree to 1e-3 and the test metric to one test row: a run
    whose ranks saw the same rows, or whose loss was scaled by the rank count (a per-row mean taken for a
    per-token one, or the reverse), is off at step 1. Classification and a causal LM cover both kinds of loss."""
    overrides, metric, test_rows = task_overrides
    one, _, _ = four_stages(overrides, tmp_path / "one")
    two, run, console = four_stages(overrides, tmp_path / "two", "train.nproc_per_node=2")

    assert "DDP in 2 processes" in console
    losses = {name: step_losses(tmp_path / name / "run") for name in ("one", "two")}
    assert len(losses["one"]) == 40
    assert losses["two"] == pytest.approx(losses["one"], abs=1e-3)
    test = {name: summary["stages"]["evaluate"][f"test_{metric}"] for name, summary in (("one", one), ("two", two))}
    assert test["two"] == pytest.approx(test["one"], abs=1 / test_rows)
    assert two["stages"]["train"]["steps"] == 40

    # Rank 0 alone logged the step metrics, onto the parent's run (each step once); the run ended FINISHED.
    client = MlflowClient(f"sqlite:///{(tmp_path / 'two' / 'mlflow.db').resolve()}")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(steps) == list(range(1, 41))
    assert run.info.status == "FINISHED" and run.data.metrics["train/steps"] == 40
    assert len(client.search_runs([run.info.experiment_id])) == 1  # no run of a worker's own
    # The stages around train ran once, in the parent; rank 0 wrote the model.
    assert console.count("] split ...") == 1 and console.count("] evaluate ...") == 1
    assert (tmp_path / "two" / "run" / "train" / "model" / "adapter_model.safetensors").exists()


def test_shared_gives_every_rank_rank_0s_value(tmp_path):
    """A pruning verdict or a checkpoint found on rank 0 reaches each rank (the others would wait forever)."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import torch.distributed as dist\n"
        "from pipeline.distributed import rank, shared\n"
        "dist.init_process_group('gloo')\n"
        "got = shared(lambda: {'from': rank(), 'path': 'checkpoint-40'})\n"
        "assert got == {'from': 0, 'path': 'checkpoint-40'}, got\n"
        "print('rank', rank(), 'ok')\n"
        "dist.destroy_process_group()\n"  # else gloo may abort the process at exit
    )
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 ok" in done.stdout and "rank 1 ok" in done.stdout


def processes_of(run_dir: Path) -> dict[str, list[int]]:
    """Pids of this run's torchrun ("launcher") and of its training processes ("workers") still alive."""
    found: dict[str, list[int]] = {"launcher": [], "workers": []}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(run_dir / "train" / "distributed") in cmdline:
            found["launcher" if "torch.distributed.run" in cmdline else "workers"].append(int(proc.name))
    return found


def start_ddp_run(tiny_models, synthetic_csv, tmp_path: Path, max_steps: int) -> tuple[subprocess.Popen, list[str]]:
    """A long two-process run of the CLI in the background, stderr piped; (the process, its overrides)."""
    overrides = [
        *tiny_overrides(tiny_models["bert"], synthetic_csv, tmp_path / "out"),
        STAGES,
        "train.nproc_per_node=2",
        f"train.max_steps={max_steps}",
        "train.eval_steps=10",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *overrides],
        cwd=REPO,
        env=cli_env(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, overrides


def wait_for(condition, seconds: float) -> None:
    """Poll `condition` until it holds or `seconds` pass (the caller asserts it afterwards)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_stops_the_workers_and_a_resume_continues_under_ddp(tiny_models, synthetic_csv, tmp_path):
    """SIGTERM to the run (as a scheduler sends it): exit 130, the run KILLED, no worker left behind; then
    `resume=true` picks the last checkpoint on rank 0, every rank resumes from it, and the run finishes."""
    out, run_dir = tmp_path / "out", tmp_path / "run"
    proc, overrides = start_ddp_run(tiny_models, synthetic_csv, tmp_path, max_steps=300)
    wait_for(lambda: list((run_dir / "train" / "checkpoints").glob("checkpoint-*")), 180)
    assert len(processes_of(run_dir)["workers"]) == 2, "the two DDP workers were not running"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr.split("interrupted:")[-1], stderr[-3000:]
    assert last_run(out).info.status == "KILLED"
    wait_for(lambda: not any(processes_of(run_dir).values()), 10)
    assert not any(processes_of(run_dir).values()), f"outlived the interrupted run: {processes_of(run_dir)}"

    resumed = run_cli(*overrides, "resume=true")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    run = last_run(out)
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_checkpoint"] == "True"
    assert run.data.metrics["train/steps"] == 300


@pytest.mark.slow
def test_a_sigkilled_run_leaves_no_training_process_behind(tiny_models, synthetic_csv, tmp_path):
    """The launching process SIGKILLed (the OOM killer, kill -9) while DDP trains: torchrun and both workers die
    too (PR_SET_PDEATHSIG on each), instead of training on as orphans."""
    run_dir = tmp_path / "run"
    proc, _ = start_ddp_run(tiny_models, synthetic_csv, tmp_path, max_steps=3000)
    wait_for(lambda: len(processes_of(run_dir)["workers"]) == 2, 180)
    assert len(processes_of(run_dir)["workers"]) == 2, "the two DDP workers never started"
    proc.kill()
    proc.communicate(timeout=30)
    wait_for(lambda: not any(processes_of(run_dir).values()), 30)
    assert not any(processes_of(run_dir).values()), f"orphans of a SIGKILLed run: {processes_of(run_dir)}"


# QLoRA's 4-bit layers do not fit the tiny 32-wide BERT even in one process (tests use a 64-wide one for it).
DDP_METHODS = sorted({m.name for m in registered_methods() if m.multi_process} - {"lora", "qlora"})


@pytest.mark.slow
@pytest.mark.parametrize("method", DDP_METHODS)
def test_every_trainer_method_trains_and_saves_under_ddp(method, tiny_models, synthetic_csv, tmp_path):
    """Each method's model wraps in DDP (no unused trainable parameter, which DDP without the search for them
    rejects), trains in two processes and is saved by rank 0, then evaluates in the parent (lora: above)."""
    out = tmp_path / "out"
    done = run_cli(
        *tiny_overrides(tiny_models["bert"], synthetic_csv, out),
        STAGES,
        f"method={method}",
        "train.nproc_per_node=2",
        "train.max_steps=6",
        "train.eval_steps=3",
        f"hydra.run.dir={out / 'run'}",
    )
    assert done.returncode == 0 and "DDP in 2 processes" in done.stdout, (done.stdout + done.stderr)[-4000:]
    summary = json.loads((out / "run" / "summary.json").read_text())
    assert summary["stages"]["train"]["steps"] == 6 and "test_accuracy" in summary["stages"]["evaluate"]
    assert last_run(out).info.status == "FINISHED"

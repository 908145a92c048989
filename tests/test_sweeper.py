"""The Optuna sweeper as users run it: `--multirun ... +hparams_search=...` on a tiny model and synthetic data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hydra_plugins.pipeline_optuna_sweeper.optuna_sweeper import consumed, plot_study, suggest
from pipeline.compare import main as compare_cli
from pipeline.errors import PipelineError
from pipeline.sweep import OVER_BUDGET_ATTR, RETRY_OF_ATTR, WORKER_ATTR, open_storage
from tests.conftest import cli_env, tiny_overrides
from tests.test_cli import REPO

# Conditional space: rank only for LoRA, bottleneck only for adapters; a learning rate too small to learn
# anything gives the median pruner something to prune.
SEARCH = """# @package _global_
defaults:
  - override /hydra/sweeper: pipeline_optuna
stages: [split, tokenize, train]
hydra:
  sweep:
    subdir: trial_${trial.number}_${method.name}
  sweeper:
    study_name: tiny
    n_trials: 5
    sampler: {type: random, seed: 4}  # first a good trial, then slow ones to prune
    pruner: {type: median, n_startup_trials: 1, n_warmup_steps: 0}
    params:
      method: {type: categorical, choices: [lora, adapter]}
      train.learning_rate: {type: categorical, choices: [0.01, 1.0e-7]}
      method.r: {type: categorical, choices: [2, 4], when: {method: [lora]}}
      method.bottleneck_size: {type: categorical, choices: [4, 8], when: {method: [adapter]}}
"""


# The tuned comparison's shape: a study per method with the same budget, each best scored once on test.
TUNED = """# @package _global_
defaults:
  - override /hydra/sweeper: pipeline_optuna
stages: [split, tokenize, train]
hydra:
  sweep:
    subdir: trial_${trial.number}_${method.name}
  sweeper:
    study_name: tuned
    n_trials: 2
    budget_per: method
    test_best: true
    sampler: {type: random, seed: 4}
    pruner: {type: none}
    params:
      method: {type: categorical, choices: [lora, adapter]}
      train.learning_rate:
        {type: float, low: 3.0e-3, high: 3.0e-2, log: true, by: {method: {adapter: {low: 1.0e-3, high: 2.0e-3}}}}
      method.r: {type: categorical, choices: [2, 4], when: {method: [lora]}}
"""


@pytest.fixture(scope="module")
def search_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("searchconf")
    (root / "hparams_search").mkdir()
    (root / "hparams_search" / "tiny.yaml").write_text(SEARCH)
    (root / "hparams_search" / "tuned.yaml").write_text(TUNED)
    return root


def sweep_command(search_path: Path, tiny_models, synthetic_csv, out: Path, *extra: str) -> list[str]:
    overrides = [o for o in tiny_overrides(tiny_models["bert"], synthetic_csv, out) if "learning_rate" not in o]
    return [
        sys.executable,
        "-m",
        "pipeline",
        "--multirun",
        "+hparams_search=tiny",
        f"hydra.searchpath=[file://{search_path}]",
        f"hydra.sweep.dir={out / 'sweep'}",
        *overrides,
        "train.max_steps=40",
        "train.eval_steps=10",
        *extra,
    ]


def run_sweep(*args, **kwargs) -> subprocess.CompletedProcess:
    return run_sweep_command(sweep_command(*args, **kwargs)[4:])


def run_sweep_command(overrides: list[str]) -> subprocess.CompletedProcess:
    """`python -m pipeline --multirun OVERRIDES` offline; fails the test with its stderr if it fails."""
    env = cli_env(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "pipeline", "--multirun", *overrides]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def load(out: Path) -> optuna.Study:
    storage = open_storage(str(out / "optuna" / "tiny.journal"), out / "unused")
    return optuna.load_study(study_name="tiny", storage=storage)


def test_submitit_runs_each_trial_as_a_job_of_its_own(search_path, tiny_models, synthetic_csv, tmp_path):
    """Hydra's submitit launcher with our sweeper, on submitit's local executor (submitit_slurm on a cluster takes
    the same path): every trial is a submitit job in its own process, and the study and its MLflow runs come out
    as with the basic launcher."""
    submitit = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "hydra.sweeper.n_jobs=2"]
    console = run_sweep(search_path, tiny_models, synthetic_csv, tmp_path, *submitit, "hydra.sweeper.n_trials=2")
    assert "Submitit 'local' sweep output dir" in console.stdout
    trials = load(tmp_path).get_trials()
    assert [t.number for t in trials] == [0, 1]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [t.state for t in trials]
    jobs = sorted((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))
    assert len(jobs) == 2 and len({job.parent.name for job in jobs}) == 2  # two jobs, two job ids
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    children = sorted(int(r.data.tags["optuna.trial_number"]) for r in runs if "optuna.trial_number" in r.data.tags)
    assert children == [0, 1] and all(r.info.status in ("FINISHED", "KILLED") for r in runs)
    pids = {r.data.tags["process.pid"] for r in runs if "optuna.trial_number" in r.data.tags}
    assert len(pids) == 2  # each trial ran in a process of its own


def test_parallel_study_samples_a_conditional_space_prunes_and_nests_mlflow_runs(
    search_path, tiny_models, synthetic_csv, tmp_path
):
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    console = run_sweep(search_path, tiny_models, synthetic_csv, tmp_path, *parallel).stdout
    trials = load(tmp_path).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    # One console line per finished trial: its state and value, the best so far, and its parameters.
    lines = {
        int(line.split("trial ", 1)[1].split()[0]): line for line in console.splitlines() if "[HYDRA] trial " in line
    }
    assert sorted(lines) == [0, 1, 2, 3, 4], console[-3000:]
    for t in trials:
        line = lines[t.number].split("[HYDRA] ", 1)[1]
        assert line.startswith(f"trial {t.number} [") and f"/5] {t.state.name} " in line, line
        assert f"method={t.params['method']}" in line, line
        assert "(best " in line or "(none complete yet)" in line, line
        if t.state == TrialState.COMPLETE:
            assert f"train/best_val_metric {t.value:.4g}" in line, line
        if t.state == TrialState.PRUNED:
            assert f"PRUNED at step {max(t.intermediate_values)} (" in line, line
    for t in trials:
        assert ("method.r" in t.params) == (t.params["method"] == "lora")
        assert ("method.bottleneck_size" in t.params) == (t.params["method"] == "adapter")
    states = [t.state for t in trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states, states
    pruned = next(t for t in trials if t.state == TrialState.PRUNED)
    assert pruned.params["train.learning_rate"] == 1e-7 and pruned.intermediate_values

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("kind") == "study")
    children = {int(r.data.tags["optuna.trial_number"]): r for r in runs if "optuna.trial_number" in r.data.tags}
    assert sorted(children) == [0, 1, 2, 3, 4]
    for t in trials:
        child = children[t.number]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["optuna.trial_state"] == t.state.name
        knob = (
            f"r={t.params['method.r']}"
            if "method.r" in t.params
            else f"bottleneck_size={t.params.get('method.bottleneck_size')}"
        )
        lr = t.params["train.learning_rate"]
        assert child.info.run_name == f"{t.params['method']} lr={lr:.2g} {knob} (trial {t.number})"  # what varies
        assert child.info.status == ("KILLED" if t.state == TrialState.PRUNED else "FINISHED")
    best = max(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert parent.data.metrics["best_value"] == pytest.approx(best)
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/trials.csv", "study/best.json", "study/history.png"} <= artifacts
    assert (tmp_path / "sweep" / "trials.csv").exists()


@pytest.mark.slow  # ~52 s; a SIGKILLed worker's trial re-run end to end is in `make test-services`
def test_resume_requeues_a_dead_workers_trial_and_a_failing_trial_does_not_stop_the_sweep(
    search_path, tiny_models, synthetic_csv, tmp_path
):
    run_sweep(search_path, tiny_models, synthetic_csv, tmp_path, "hydra.sweeper.n_trials=2")
    study = load(tmp_path)
    orphan = study.ask()  # as if a worker had been killed mid-trial
    study._storage.set_trial_user_attr(orphan._trial_id, WORKER_ATTR, f"{os.uname().nodename}:999999")

    # LoRA cannot find its target modules now: its trials fail; adapter trials still run.
    bad_sets = "model.target_module_sets={attention_qv: [nope]}"
    run_sweep(search_path, tiny_models, synthetic_csv, tmp_path, "hydra.sweeper.n_trials=6", bad_sets)
    trials = load(tmp_path).get_trials()
    numbers = [t.number for t in trials]
    assert numbers == sorted(set(numbers)) == list(range(len(trials)))
    assert trials[2].state == TrialState.FAIL  # the orphan
    retry = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == 2]
    assert len(retry) == 1 and retry[0].state != TrialState.RUNNING
    assert len(trials) - len(retry) == 6  # only the remaining trials ran
    failed = [t for t in trials[3:] if t.state == TrialState.FAIL]
    assert failed and all("target_modules" in t.user_attrs["error"] for t in failed)
    assert all(t.params["method"] == "lora" for t in failed)
    assert any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials[3:])  # the sweep went on


@pytest.mark.slow  # ~50 s; three workers on PostgreSQL run in `make test-services` (tests/test_services.py)
def test_two_workers_share_one_study_without_duplicate_trials(search_path, tiny_models, synthetic_csv, tmp_path):
    env = cli_env(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    command = sweep_command(search_path, tiny_models, synthetic_csv, tmp_path, "hydra.sweeper.n_trials=4")
    workers = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
    trials = load(tmp_path).get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    ran = [t for t in trials if OVER_BUDGET_ATTR not in t.user_attrs]
    assert len(ran) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ran)  # exactly n_trials
    assert all(t.state == TrialState.FAIL for t in trials if t not in ran)  # asked in a race for the last slot
    assert len({t.user_attrs[WORKER_ATTR] for t in ran}) == 2  # both did work


def test_a_sweep_mistake_is_one_error_line_and_exit_2(search_path, tiny_models, synthetic_csv, tmp_path):
    command = sweep_command(search_path, tiny_models, synthetic_csv, tmp_path, "seed=1,2")
    done = subprocess.run(command, cwd=REPO, env=cli_env(HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: seed=1,2: the Optuna sweeper samples hydra.sweeper.params; pass fixed values only"]


# A range only `by` gives, one case per value of `m`: valid although the spec alone has no low or high
GOOD = {"a": {"low": 0.1, "high": 0.2}, "b": {"low": 0.1, "high": 0.3}}
BAD = {"a": {"low": 0.1, "high": 0.2}, "b": {"low": 0.2, "high": 0.1}}
BY_RANGES = {"type": "float", "log": True, "by": {"m": GOOD}}
NUMBERED = {"4": {"low": 0.1, "high": 0.2}, "8": {"low": 0.1, "high": 0.3}}


def test_ranges_given_only_by_another_params_value_pass_the_settings_check():
    from omegaconf import OmegaConf

    from hydra_plugins.pipeline_optuna_sweeper.config import OptunaSweeperConf
    from hydra_plugins.pipeline_optuna_sweeper.optuna_sweeper import OptunaSweeper

    params = {"m": {"type": "categorical", "choices": ["a", "b"]}, "x": BY_RANGES}
    conf = OmegaConf.merge(OmegaConf.structured(OptunaSweeperConf), {"params": params})
    sweeper = OptunaSweeper(**OmegaConf.to_container(conf))
    sweeper.config = OmegaConf.create({"stages": ["split", "tokenize", "train"]})
    sweeper.check_settings()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"n_jobs": 0}, "hydra.sweeper.n_jobs: 0 is out of range; expected a value > 0"),  # asked no trial, forever
        ({"n_trials": 0}, "hydra.sweeper.n_trials: 0 is out of range; expected a value > 0"),
        ({"max_failures": -1}, "hydra.sweeper.max_failures: -1 is out of range; expected a value >= 0"),
        ({"objectives": [{"metric": "train/best_val_metric", "direction": "up"}]}, "direction 'up'; expected"),
        ({"objectives": [{"metric": "evaluate/test_accuracy"}]}, "'evaluate/test_accuracy' is not '<stage>/<name>'"),
        ({"params": {"method": {"type": "categorical", "choices": []}}}, "params.method.choices: empty"),
        ({"params": {"x": {"type": "float", "low": 2.0, "high": 1.0}}}, "params.x: low 2.0 is above high 1.0"),
        ({"params": {"x": {"type": "int", "low": 2}}}, "params.x: a int range needs low and high"),
        ({"params": {"x": {"type": "loguniform", "low": 1, "high": 2}}}, "params.x.type: 'loguniform'; expected"),
        (  # a case of `by` is checked as the spec it makes
            {"params": {"m": {"type": "categorical", "choices": ["a", "b"]}, "x": BY_RANGES | {"by": {"m": BAD}}}},
            "hydra.sweeper.params.x: low 0.2 is above high 0.1 (with m=b)",
        ),
        (  # `by` on a param sampled after it: suggest sees no value yet and samples the spec alone
            {"params": {"x": BY_RANGES, "m": {"type": "categorical", "choices": ["a", "b"]}}},
            "hydra.sweeper.params.x: a float range needs low and high",
        ),
        (  # YAML keys "4" and "8" are strings, the choices numbers: no case applies
            {"params": {"r": {"type": "categorical", "choices": [4, 8]}, "x": BY_RANGES | {"by": {"r": NUMBERED}}}},
            "hydra.sweeper.params.x: a float range needs low and high",
        ),
    ],
)
def test_a_setting_every_trial_would_trip_on_fails_before_the_first(setting, message):
    """n_jobs=0 asked for no trial, forever; the others failed trial after trial, or left a trial RUNNING."""
    from omegaconf import OmegaConf

    from hydra_plugins.pipeline_optuna_sweeper.config import OptunaSweeperConf
    from hydra_plugins.pipeline_optuna_sweeper.optuna_sweeper import OptunaSweeper

    conf = OmegaConf.merge(OmegaConf.structured(OptunaSweeperConf), setting)
    sweeper = OptunaSweeper(**OmegaConf.to_container(conf))
    sweeper.config = OmegaConf.create({"stages": ["split", "tokenize", "train"]})
    with pytest.raises(PipelineError, match=re.escape(message)):
        sweeper.check_settings()


def test_a_stopped_sweep_says_why_its_last_trial_failed_and_a_resume_clears_the_study_runs_error(
    search_path, tiny_models, synthetic_csv, tmp_path
):
    """A typo in the objective's name: the stop names the metrics the stage has; fixed and rerun, the study's run
    (FAILED with the error) finishes without it."""
    typo = "hydra.sweeper.objectives=[{metric: train/best_val, direction: maximize}]"
    command = sweep_command(search_path, tiny_models, synthetic_csv, tmp_path, "train.max_steps=2")
    env = cli_env(HF_HUB_OFFLINE="1")
    stop_at_once = [typo, "hydra.sweeper.max_failures=0"]
    done = subprocess.run([*command, *stop_at_once], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    reason = "the last: objective metrics ['train/best_val'] not in the run summary; train has ["
    assert len(errors) == 1 and reason in errors[0], errors
    assert "'train/best_val_metric'" in errors[0] and [t.state for t in load(tmp_path).trials] == [TrialState.FAIL]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests").experiment_id
    (study_run,) = client.search_runs([experiment], "tags.kind = 'study'")
    assert study_run.info.status == "FAILED" and "train/best_val" in study_run.data.tags["error"]

    fixed = ["hydra.sweeper.max_failures=1", "hydra.sweeper.n_trials=2"]
    done = subprocess.run([*command, *fixed], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (study_run,) = client.search_runs([experiment], "tags.kind = 'study'")
    assert study_run.info.status == "FINISHED" and "error" not in study_run.data.tags


def test_a_trial_asked_after_the_budget_was_spent_elsewhere_is_failed_unrun_and_not_counted(tmp_path):
    """Two workers check the budget, both see one slot left, both ask: the later trial number is over budget."""
    from omegaconf import OmegaConf

    from hydra_plugins.pipeline_optuna_sweeper.config import OptunaSweeperConf
    from hydra_plugins.pipeline_optuna_sweeper.optuna_sweeper import OptunaSweeper

    sweeper = OptunaSweeper(**OmegaConf.to_container(OmegaConf.structured(OptunaSweeperConf(n_trials=3))))
    study = optuna.create_study(storage=open_storage(None, tmp_path / "s.journal"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    first, second = study.ask(), study.ask()  # each worker asked for the one slot left
    assert sweeper.within_budget(study, [first]) == [first]
    assert sweeper.within_budget(study, [second]) == []
    trials = study.get_trials()
    assert trials[3].state == TrialState.FAIL and trials[3].user_attrs[OVER_BUDGET_ATTR] is True
    assert consumed(study) == 3 and sweeper.failed_trials(study) == []  # not counted, not a failure


@pytest.mark.slow  # ~60 s
def test_a_sweep_killed_in_its_last_trial_finishes_the_budget_on_a_rerun(
    search_path, tiny_models, synthetic_csv, tmp_path
):
    command = sweep_command(search_path, tiny_models, synthetic_csv, tmp_path, "hydra.sweeper.n_trials=3")
    env = cli_env(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    # tests/fault_driver.py SIGKILLs the worker at step 5 of its third trial (the last of n_trials=3)
    driven = [sys.executable, "tests/fault_driver.py", "trial-2", "SIGKILL", *command[3:]]
    killed = subprocess.run(driven, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert [t.state for t in load(tmp_path).get_trials()][2] == TrialState.RUNNING
    rerun = run_sweep_command(command[4:])
    assert "trial 2 was left RUNNING by a dead worker: failed and queued again" in rerun.stdout + rerun.stderr
    trials = load(tmp_path).get_trials()
    states = [t.state for t in trials]
    assert states[2] == TrialState.FAIL and states.count(TrialState.FAIL) == 1, states
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 3, states  # the budget is spent
    assert TrialState.WAITING not in states and TrialState.RUNNING not in states, states
    assert [t.params for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == 2] == [trials[2].params]
    assert [t.number for t in trials] == list(range(len(trials)))
    rerun_again = run_sweep_command(command[4:])  # nothing left to do: the study is unchanged
    assert len(load(tmp_path).get_trials()) == len(trials), rerun_again.stdout[-2000:]


DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}


def test_a_retry_queued_for_a_killed_last_trial_still_runs():
    """n_trials=3, the worker SIGKILLed in trial 2: the rerun fails it, queues its parameters, and must run them."""
    study = optuna.create_study()
    for value in (0.5, 0.6):
        study.add_trial(optuna.trial.create_trial(params={"x": value}, distributions=DIST, value=value))
    study.add_trial(optuna.trial.create_trial(params={"x": 0.7}, distributions=DIST, state=TrialState.FAIL))
    study.enqueue_trial({"x": 0.7}, user_attrs={RETRY_OF_ATTR: 2})
    assert consumed(study) == 2  # one of three left: the retry
    retry = study.ask()
    assert retry.number == 3 and retry.suggest_float("x", 0, 1) == 0.7
    study.tell(retry, 0.7)
    assert consumed(study) == 3


def test_each_method_gets_its_own_study_and_budget_and_only_its_best_trial_sees_test(
    search_path, tiny_models, synthetic_csv, tmp_path
):
    command = sweep_command(search_path, tiny_models, synthetic_csv, tmp_path)[4:]
    run_sweep_command([c.replace("+hparams_search=tiny", "+hparams_search=tuned") for c in command])
    studies = {}
    for method in ("lora", "adapter"):
        storage = open_storage(str(tmp_path / "optuna" / f"tuned-{method}.journal"), tmp_path / "unused")
        studies[method] = optuna.load_study(study_name=f"tuned-{method}", storage=storage)
        trials = studies[method].get_trials()
        assert len(trials) == 2 and {t.params["method"] for t in trials} == {method}
        assert all(t.state == TrialState.COMPLETE for t in trials)
    adapter_rates = [t.params["train.learning_rate"] for t in studies["adapter"].get_trials()]
    assert all(1e-3 <= lr <= 2e-3 for lr in adapter_rates)  # the method's own range (`by`)

    sweep = tmp_path / "sweep"
    table = pd.read_csv(sweep / "comparison" / "comparison.csv").set_index("method")
    assert sorted(table.index) == ["adapter", "lora"] and (table["status"] == "ok").all()
    for method, study in studies.items():
        best_dir = f"trial_{study.best_trial.number}_{method}"
        assert table.loc[method, "run_dir"] == best_dir
        assert table.loc[method, "best_val_metric"] == pytest.approx(study.best_value)
        assert table.loc[method, "test_accuracy_low"] <= table.loc[method, "test_accuracy"]
    assert {"trials.csv", "best.json"} <= {p.name for p in (sweep / "studies" / "tuned-lora").iterdir()}
    assert table.loc["lora", "setting"].startswith("method=lora train.learning_rate=")  # only what varies
    tested = sorted(d.parent.name for d in sweep.glob("*/evaluate"))
    assert tested == sorted(table["run_dir"])  # no other trial was scored on test

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("kind") == "comparison")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_id for r in children) == sorted(table["mlflow_run_id"])
    assert len([r for r in runs if r.data.tags.get("kind") == "study"]) == 2

    assert compare_cli([str(sweep)]) == 0  # a rebuild compares the same runs (comparison/runs.txt)
    assert pd.read_csv(sweep / "comparison" / "comparison.csv").set_index("method").equals(table)


def test_a_param_takes_its_range_from_the_value_of_another():
    space = {
        "method": {"type": "categorical", "choices": ["full"]},
        "lr": {"type": "float", "low": 0.1, "high": 0.2, "by": {"method": {"full": {"low": 1e-5, "high": 2e-5}}}},
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        assert 1e-5 <= suggest(study.ask(), space)["lr"] <= 2e-5


def test_a_dead_workers_heartbeat_stops_and_live_workers_queue_its_trial_once(tmp_path, monkeypatch):
    """On an RDB storage a sweeper beats for the trials it runs (Optuna beats only inside study.optimize). When a
    worker on another machine dies, its beats stop; of the live workers that look next (two, in turn), the one
    whose FAIL the storage accepts queues its parameters: exactly once, and the study's budget counts it once."""
    import time

    from optuna.storages._heartbeat import get_heartbeat_thread

    from hydra_plugins.pipeline_optuna_sweeper.optuna_sweeper import OptunaSweeper
    from pipeline import sweep

    monkeypatch.setattr(sweep, "HEARTBEAT_S", 1)
    monkeypatch.setattr(sweep, "GRACE_S", 2)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    from omegaconf import OmegaConf

    from hydra_plugins.pipeline_optuna_sweeper.config import OptunaSweeperConf

    conf = OmegaConf.to_container(OmegaConf.structured(OptunaSweeperConf(n_trials=3)))
    sweepers = [OptunaSweeper(**conf) for _ in range(2)]
    studies = [
        optuna.create_study(study_name="hb", storage=open_storage(url, tmp_path, on_stale=sweepers[0].retry)),
        optuna.load_study(study_name="hb", storage=open_storage(url, tmp_path, on_stale=sweepers[1].retry)),
    ]
    dead = studies[0].ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    dead.set_user_attr(WORKER_ATTR, "another-host:4242")  # not this host: only its heartbeat can tell
    with get_heartbeat_thread(dead._trial_id, studies[0]._storage):
        time.sleep(1.5)  # it beat while it lived
        for sweeper, study in zip(sweepers, studies, strict=True):
            sweeper.requeue_stale(study)
        assert studies[0].trials[0].state == TrialState.RUNNING  # alive: left alone
    time.sleep(3)  # > GRACE_S without a beat
    for sweeper, study in zip(sweepers, studies, strict=True):
        sweeper.requeue_stale(study)
    trials = optuna.load_study(study_name="hb", storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs[RETRY_OF_ATTR] == 0 and trials[1].system_attrs["fixed_params"] == dead.params
    assert consumed(studies[1]) == 0  # the dead trial counts again once its retry starts


def test_a_queued_retry_keeps_its_slot_against_a_trial_asked_after_it(tmp_path):
    """A retry waits in the queue while another worker, asking just before it was queued, makes a new trial: the
    new one (a higher number) is over budget, and the retry runs when a worker starts it."""
    from omegaconf import OmegaConf

    from hydra_plugins.pipeline_optuna_sweeper.config import OptunaSweeperConf
    from hydra_plugins.pipeline_optuna_sweeper.optuna_sweeper import OptunaSweeper

    sweeper = OptunaSweeper(**OmegaConf.to_container(OmegaConf.structured(OptunaSweeperConf(n_trials=2))))
    study = optuna.create_study(storage=open_storage(None, tmp_path / "s.journal"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # trial 0
    study.tell(study.ask(), state=TrialState.FAIL)  # trial 1, whose worker died
    study.enqueue_trial({"x": 0.5}, user_attrs={RETRY_OF_ATTR: 1})  # trial 2, its retry, in the last slot
    late = optuna.Trial(study, study._storage.create_new_trial(study._study_id))  # trial 3, not the queued one
    assert sweeper.within_budget(study, [late]) == []
    retry = study.ask()
    assert retry.number == 2 and sweeper.within_budget(study, [retry]) == [retry]


def test_study_plots_leave_the_process_plot_style_as_it_was(tmp_path):
    """Optuna's matplotlib plots switch the style to ggplot for the whole process; the comparison plot a sweep draws
    next must look as it does from any other command."""
    import matplotlib

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1), n_trials=4)
    before = dict(matplotlib.rcParams)
    plot_study(study, ["maximize"], tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} >= {"history.png", "parallel_coordinates.png"}
    assert dict(matplotlib.rcParams) == before


def test_the_last_evaluation_is_reported_but_never_pruned():
    """A trial told to stop at its final step has already run in full: it completes and stays a best-trial candidate."""
    from types import SimpleNamespace

    from pipeline.finetune import PruningCallback

    class Always(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return True

    trial = optuna.create_study(direction="maximize", pruner=Always()).ask()
    callback = PruningCallback(trial, "f1_macro")
    with pytest.raises(optuna.TrialPruned, match="pruned at step 10"):
        callback.on_evaluate(None, SimpleNamespace(global_step=10, max_steps=20), None, metrics={"eval_f1_macro": 0.5})
    callback.on_evaluate(None, SimpleNamespace(global_step=20, max_steps=20), None, metrics={"eval_f1_macro": 0.6})
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {10: 0.5, 20: 0.6}

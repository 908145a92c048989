"""A run directory holds one run at a time (a second run there fails at once, and the first keeps its files), and
resume continues only the run the directory was made by."""

from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from pipeline.atomic import write_json
from pipeline.errors import PipelineError
from pipeline.rundir import check_resumable, holding
from tests.test_cli import run_cli


def test_a_second_run_in_a_held_run_directory_fails_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    own = b"- seed=1\n"
    (run_dir / ".hydra" / "overrides.yaml").write_bytes(own)
    with holding(run_dir):
        second = run_cli(
            "+experiment=agnews_lora",
            "model=minilm",
            "data=ag_news_csv",
            f"data.dir={tmp_path / 'data'}",
            f"paths.output_dir={tmp_path}",
            f"hydra.run.dir={run_dir}",
        )
        clobbered = (run_dir / ".hydra" / "overrides.yaml").read_bytes()
    assert second.returncode == 2, second.stderr[-2000:]
    errors = second.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: hydra.run.dir: {run_dir} is in use by another run ("), (
        errors
    )
    assert f"pid {os.getpid()}: " in errors[0] and errors[0].endswith("wait for it to end, or choose another directory")
    assert clobbered != own  # Hydra wrote the second run's config before the lock was tried ...
    assert (run_dir / ".hydra" / "overrides.yaml").read_bytes() == own  # ... and the holder put its own back
    assert not (tmp_path / "mlflow.db").exists()  # the second run started no MLflow run
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "__main__.log"]


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    with holding(tmp_path):
        pass
    with holding(tmp_path):  # would raise if the first hold had leaked
        pass


def made_with(run_dir, cfg) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "manifest.json", {"config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)})


def test_resume_needs_an_earlier_run_in_the_directory(tmp_path, compose_config):
    with pytest.raises(PipelineError, match=r"^resume: .* holds no earlier run \(no manifest\.json\); point"):
        check_resumable(compose_config(["+experiment=agnews_lora", "resume=true"]), tmp_path)


def test_resume_accepts_a_longer_training_and_rejects_other_changes_naming_them(tmp_path, compose_config):
    made_with(tmp_path, compose_config(["+experiment=agnews_lora", "data.max_samples=800", "train.max_steps=50"]))
    longer = ["+experiment=agnews_lora", "data.max_samples=800", "train.max_steps=100", "resume=true"]
    check_resumable(compose_config([*longer, "stages=[train,evaluate]", "tracking.experiment=x"]), tmp_path)
    with pytest.raises(PipelineError) as raised:
        check_resumable(compose_config([*longer[:1], "data.max_samples=400", *longer[2:], "seed=7"]), tmp_path)
    message = str(raised.value)
    assert message.startswith(
        f"resume: the config differs from the one {tmp_path} was made with: data.max_samples (800 -> 400), "
        "seed (42 -> 7); on resume only resume, stages, cache, train.max_steps, train.epochs"
    ), message

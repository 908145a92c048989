"""Reproducible by construction: determinism, stage cache, manifest, reproduce from a run id, resume."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from transformers import Trainer

from pipeline.reproduce import logged_config, reproduce
from pipeline.runner import run_pipeline
from tests.conftest import tiny_overrides

STAGES = "stages=[split,tokenize,train,evaluate]"


def scores(results) -> dict[str, float]:
    return {k: v for k, v in results["evaluate"].metrics().items() if k != "cache_hit"}


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def client_for(output_dir: Path) -> MlflowClient:
    mlflow.set_tracking_uri(f"sqlite:///{output_dir.resolve() / 'mlflow.db'}")
    return MlflowClient()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_models, synthetic_csv, compose_config):
    out = tmp_path_factory.mktemp("repro")
    overrides = [*tiny_overrides(tiny_models["bert"], synthetic_csv, out), STAGES]
    return overrides, out, run_pipeline(compose_config(overrides), out / "a")


def test_same_config_and_seed_give_identical_splits_and_metrics(reference, compose_config):
    overrides, out, first = reference
    second = run_pipeline(compose_config([*overrides, "cache=off"]), out / "b")
    assert second["split"].index_sha256 == first["split"].index_sha256
    assert scores(second) == scores(first)  # equality, not closeness: CPU runs repeat bit for bit
    assert second["train"].best_metric == first["train"].best_metric


def test_cache_hits_only_what_did_not_change(tmp_path, tiny_models, synthetic_csv, compose_config):
    data = tmp_path / "data.csv"
    shutil.copy(synthetic_csv, data)
    base = [*tiny_overrides(tiny_models["bert"], data, tmp_path), "stages=[split,tokenize,evaluate]"]

    def hits(*extra: str) -> tuple[bool, bool, bool]:
        results = run_pipeline(compose_config([*base, *extra]), tmp_path / f"run{len(list(tmp_path.glob('run*')))}")
        return results["split"].cache_hit, results["tokenize"].cache_hit, results["evaluate"].cache_hit

    assert hits() == (False, False, False)
    assert hits("train.learning_rate=1e-4", "stage.errors.top_k=5") == (True, True, True)
    assert hits("model.max_length=24") == (True, False, False)
    assert hits("seed=7") == (False, False, False)
    assert hits("cache=refresh") == (False, False, False)
    assert hits() == (True, True, True)
    with data.open("a") as fh:
        fh.write("the apple of the banana,alpha\n")
    assert hits() == (False, False, False)
    assert hits("cache=off", f"paths.cache_dir={tmp_path / 'unused'}") == (False, False, False)
    assert not (tmp_path / "unused").exists()
    assert not list((tmp_path / "cache").rglob(".*tmp-*"))


def test_explore_cache_is_keyed_by_what_precision_auto_became(
    tmp_path, tiny_models, synthetic_csv, monkeypatch, compose_config
):
    """A stage cache shared between a bf16 machine and an fp32 one never hands one's embeddings to the other."""
    from pipeline import inference

    overrides = [*tiny_overrides(tiny_models["bert"], synthetic_csv, tmp_path), "stages=[split,tokenize,explore]"]
    runs = []

    def run(native: bool) -> bool:
        monkeypatch.setattr(inference, "native_bf16", lambda: native)
        runs.append(tmp_path / f"run{len(runs)}")
        return run_pipeline(compose_config(overrides), runs[-1])["explore"].cache_hit

    assert [run(True), run(False), run(True)] == [False, False, True]
    embeddings = [np.load(path / "explore_base" / "embeddings.npy") for path in runs]
    assert not np.array_equal(embeddings[0], embeddings[1])  # the stage really embedded in bf16, then in fp32
    tags = [client_for(tmp_path).get_run(summary_of(path)["mlflow_run_id"]).data.tags for path in runs]
    assert [t["explore.precision"] for t in tags] == ["bf16", "fp32", "bf16"]


def test_reproduce_embeds_in_the_precision_the_run_used(reference, tmp_path):
    """`auto` is pinned to what it became on the run's machine; runs from before the setting embedded in fp32."""
    _, out, _ = reference
    client = client_for(out)
    run_id = summary_of(out / "a")["mlflow_run_id"]
    assert logged_config(run_id, []).stage.explore.precision.value == "auto"  # explore did not run: nothing to pin
    client.set_tag(run_id, "explore.precision", "bf16")
    assert logged_config(run_id, []).stage.explore.precision.value == "bf16"
    assert logged_config(run_id, ["stage.explore.precision=fp32"]).stage.explore.precision.value == "fp32"
    config = OmegaConf.load(client.download_artifacts(run_id, "config/config.yaml", str(tmp_path)))
    del config.stage.explore["precision"]  # as logged before the setting existed
    OmegaConf.save(config, tmp_path / "config.yaml")
    older = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    client.log_artifact(older, str(tmp_path / "config.yaml"), "config")
    assert logged_config(older, []).stage.explore.precision.value == "fp32"


def test_manifest_records_code_inputs_machine_and_splits(reference, synthetic_csv):
    _, out, results = reference
    manifest = json.loads((out / "a" / "manifest.json").read_text())
    assert len(manifest["git"]["commit"]) == 40 and isinstance(manifest["git"]["dirty"], bool)
    assert manifest["packages"]["torch"].startswith("2.") and "transformers" in manifest["packages"]
    assert manifest["hardware"]["cores"] >= 1 and manifest["hardware"]["cpu"]
    expected = hashlib.sha256(Path(synthetic_csv).read_bytes()).hexdigest()
    assert list(manifest["data"]["files_sha256"].values()) == [expected]
    assert manifest["splits_index_sha256"] == results["split"].index_sha256
    assert "cudnn_deterministic" in manifest["determinism"]
    assert manifest["train_peak_memory_mb"] > 0
    # The GPU path when there is one (bf16 where supported, TF32, pinned batches), plain fp32 on CPU.
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    runtime = manifest["train_runtime"]
    assert runtime["device"] == ("cuda" if cuda else "cpu") and runtime["optim"] == "adamw_torch_fused"
    assert runtime["precision"] == ("bf16" if bf16 else "fp32")
    assert runtime["tf32"] is cuda and runtime["pin_memory"] is cuda
    assert ("gpu" in runtime) is cuda and ("gpu" in manifest["hardware"]) is cuda
    run = client_for(out).get_run(json.loads((out / "a" / "summary.json").read_text())["mlflow_run_id"])
    contexts = {tag.value for d in run.inputs.dataset_inputs for tag in d.tags if tag.key == "mlflow.data.context"}
    assert contexts == {"train", "validation", "test"}
    assert run.data.tags["git_dirty"] in {"True", "False"}


def test_reproduce_from_run_id_gives_the_same_metrics(reference):
    _, out, first = reference
    run_id = json.loads((out / "a" / "summary.json").read_text())["mlflow_run_id"]
    run_dir = reproduce(run_id, [], resume=False, tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")
    summary = json.loads((run_dir / "summary.json").read_text())
    rerun = {k: v for k, v in summary["stages"]["evaluate"].items() if k not in {"cache_hit", "wall_s"}}
    assert rerun == scores(first)
    assert client_for(out).get_run(summary["mlflow_run_id"]).data.params["seed"] == "42"


def test_interrupted_training_is_killed_then_resumes_to_the_same_metrics(reference, compose_config, monkeypatch):
    overrides, out, first = reference
    original_step = Trainer.training_step

    def interrupt_at_50(self, *args, **kwargs):
        if self.state.global_step == 50:
            raise KeyboardInterrupt  # what Ctrl-C (or SIGTERM, via our handler) raises mid-training
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", interrupt_at_50)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(compose_config(overrides), out / "c")
    killed = client_for(out).search_runs(
        [client_for(out).get_experiment_by_name("tests").experiment_id], order_by=["attributes.start_time DESC"]
    )[0]
    assert killed.info.status == "KILLED"
    assert (out / "c" / "train" / "checkpoints" / "checkpoint-40").is_dir()
    monkeypatch.setattr(Trainer, "training_step", original_step)
    # `reproduce --resume` finds the run directory from the run's tags and continues it.
    reproduce(killed.info.run_id, [], resume=True, tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")
    summary = json.loads((out / "c" / "summary.json").read_text())
    resumed = {k: v for k, v in summary["stages"]["evaluate"].items() if k not in {"cache_hit", "wall_s"}}
    assert resumed == scores(first)
    run = client_for(out).get_run(summary["mlflow_run_id"])
    assert run.data.tags["resumed_from_checkpoint"] == "True" and run.info.status == "FINISHED"


def test_manifest_records_the_package_copy_that_imports(tmp_path, monkeypatch):
    """With two copies of a package on sys.path (a --target install over a system one), the first one imports."""
    from pipeline.manifest import installed_packages

    for folder, version in (("second", "1.0"), ("first", "2.0")):  # prepend: "first" ends up ahead
        info = tmp_path / folder / f"twice_installed-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: twice-installed\nVersion: {version}\n")
        monkeypatch.syspath_prepend(str(tmp_path / folder))
    assert installed_packages()["twice-installed"] == "2.0"


def test_a_commit_made_while_a_process_runs_marks_its_later_runs_dirty(tmp_path, monkeypatch):
    """A multirun's later jobs run modules imported for the first: a commit made mid-sweep is not all of their code."""
    import subprocess

    from pipeline import manifest

    def git(*args: str) -> None:
        command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
        subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-qm", "first")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(manifest, "_STARTED_AT", {})  # a new process
    first = manifest.git_state()
    assert first["dirty"] is False and len(first["commit"]) == 40 and "process_started_at" not in first
    assert manifest.git_state() == first  # nothing changed: a clean, reproducible run
    (tmp_path / "code.py").write_text("x = 2\n")
    git("commit", "-qam", "second, mid-sweep")
    later = manifest.git_state()
    assert later["dirty"] is True and later["process_started_at"] == first["commit"] != later["commit"]

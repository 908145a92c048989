"""Offline, a run naming a Hub model or dataset fails in seconds with the offline command, or runs from the cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import hub
from pipeline.errors import PipelineError
from tests.conftest import cli_env

REPO = Path(__file__).resolve().parents[1]
OFFLINE_SWAP = "model=minilm data=ag_news_csv data.dir="  # what the offline command swaps in


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache (hub and datasets), so nothing the default experiment names is cached."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", datasets.config.HF_HUB_OFFLINE)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    hub.offline_reason.cache_clear()
    yield tmp_path
    hub.offline_reason.cache_clear()


def test_offline_reason_honours_hf_hub_offline(monkeypatch, empty_hf_cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.offline_reason() == "HF_HUB_OFFLINE=1 is set"


def test_offline_reason_names_an_unreachable_endpoint(monkeypatch, empty_hf_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    reason = hub.offline_reason()
    assert reason is not None and reason.startswith("the Hugging Face Hub (http://127.0.0.1:9) is unreachable")


def test_missing_hub_model_and_data_name_both_fields_and_the_offline_command(
    monkeypatch, empty_hf_cache, compose_config
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "SHARED_AG_NEWS", empty_hf_cache)  # the shared copy, where it exists, is named
    overrides = ["+experiment=agnews_lora", "train.epochs=2", "stages=[split, tokenize]"]
    cfg = compose_config(overrides)
    with pytest.raises(PipelineError) as caught:
        hub.check_hub(cfg, overrides, "minilm")
    message = str(caught.value)
    assert message.startswith(
        "model.name_or_path='distilbert-base-uncased', data.name='fancyzhx/ag_news': not in the local Hugging Face "
        "cache, and HF_HUB_OFFLINE=1 is set; "
    )
    assert message.endswith(  # quoted where the shell would otherwise split or glob it
        "offline: python -m pipeline +experiment=agnews_lora train.epochs=2 'stages=[split, tokenize]' "
        f"model=minilm data=ag_news_csv data.dir={empty_hf_cache}"
    )
    assert "\n" not in message


def test_a_users_model_override_is_replaced_not_repeated(monkeypatch, empty_hf_cache, compose_config):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    overrides = ["+experiment=agnews_lora", "model=distilbert", "model.max_length=64", "data=ag_news_csv"]
    cfg = compose_config(overrides)
    with pytest.raises(PipelineError) as caught:
        hub.check_hub(cfg, overrides, "minilm")
    message = str(caught.value)
    assert message.startswith("model.name_or_path='distilbert-base-uncased': not in the local")  # data is local
    assert message.endswith("offline: python -m pipeline +experiment=agnews_lora data=ag_news_csv model=minilm")


def test_everything_cached_switches_the_libraries_to_offline_mode(monkeypatch, empty_hf_cache, compose_config):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # A cache entry laid out as huggingface_hub writes it: refs/main -> snapshots/<commit>/config.json.
    repo = empty_hf_cache / "hub" / "models--distilbert-base-uncased"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    (empty_hf_cache / "datasets" / "fancyzhx___ag_news").mkdir(parents=True)
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = False

    hub.check_hub(compose_config(["+experiment=agnews_lora"]), ["+experiment=agnews_lora"], "minilm")
    assert constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"


def test_local_model_and_data_never_probe_the_hub(monkeypatch, tiny_models, synthetic_csv, compose_config):
    def fail() -> str:
        raise AssertionError("probed the Hub for a run that names nothing on it")

    monkeypatch.setattr(hub, "offline_reason", fail)
    cfg = compose_config(["data=csv", f"data.path={synthetic_csv}", f"model.name_or_path={tiny_models['bert']}"])
    hub.check_hub(cfg, [], "minilm")


def test_the_readme_command_offline_exits_2_with_one_line_before_any_stage(tmp_path):
    env = {
        **cli_env(),
        "HF_HUB_OFFLINE": "",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONWARNINGS": "ignore",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "+experiment=agnews_lora", f"paths.output_dir={tmp_path / 'out'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # huggingface_hub's own retries took ~40 s to fail; this bounds a regression, not a speed
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is unreachable" in errors[0] and OFFLINE_SWAP in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert "[1/" not in done.stdout  # no stage started
    print(f"failed offline in {time.monotonic() - started:.1f} s")

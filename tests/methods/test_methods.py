"""Method registry, target-module checks, and honest parameter accounting on tiny models."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from pipeline.errors import PipelineError
from pipeline.methods import get_method, registered_methods
from pipeline.models import count_parameters
from pipeline.tasks.classification import load_classifier


def model_cfg(path, sets):
    return OmegaConf.create(
        {"name_or_path": str(path), "from_package": None, "revision": None, "target_module_sets": sets}
    )


BERT_SETS = {"attention_qv": ["query", "value"]}
DISTIL_SETS = {"attention_qv": ["q_lin", "v_lin"]}


def test_registry_knows_full_and_lora_and_rejects_unknown_names():
    assert {"full", "lora"} <= {m.name for m in registered_methods()}
    with pytest.raises(PipelineError, match=r"^method\.name: unknown method 'nope'; expected one of \["):
        get_method("nope")


def test_lora_on_distilbert_counts_pre_classifier_as_head(tiny_models):
    mcfg = model_cfg(tiny_models["distilbert"], DISTIL_SETS)
    lora = get_method("lora")
    method_cfg = OmegaConf.structured(lora.config_cls(r=4))
    model = lora.wrap(load_classifier(mcfg, ["a", "b", "c"], seed=0), method_cfg, mcfg)
    counts = count_parameters(model)
    assert counts.trainable_method == 2 * 2 * 4 * (32 + 32)
    assert counts.trainable_head == (32 * 32 + 32) + (32 * 3 + 3)  # pre_classifier + classifier
    plain = count_parameters(load_classifier(mcfg, ["a", "b", "c"], seed=0))
    assert counts.total == plain.total + counts.trainable_method


def test_full_fine_tuning_trains_everything(tiny_models):
    mcfg = model_cfg(tiny_models["bert"], BERT_SETS)
    model = get_method("full").wrap(load_classifier(mcfg, ["a", "b"], seed=0), None, mcfg)
    counts = count_parameters(model)
    assert counts.trainable == counts.total
    assert counts.trainable_head == 32 * 2 + 2


def test_unknown_target_modules_list_the_models_linear_modules(tiny_models):
    mcfg = model_cfg(tiny_models["distilbert"], DISTIL_SETS)
    lora = get_method("lora")
    model = load_classifier(mcfg, ["a", "b"], seed=0)
    with pytest.raises(PipelineError, match=r"^method\.target_modules: \['query'\] not found in Distil.*q_lin"):
        lora.check_applicable(model, OmegaConf.structured(lora.config_cls(target_modules=["query"])), mcfg)
    with pytest.raises(PipelineError, match=r"^method\.target_modules: unknown set 'attention_all'"):
        lora.check_applicable(model, OmegaConf.structured(lora.config_cls(target_modules="attention_all")), mcfg)


def test_same_seed_gives_the_same_new_head(tiny_models):
    mcfg = model_cfg(tiny_models["bert"], BERT_SETS)
    a, b = (load_classifier(mcfg, ["x", "y"], seed=3) for _ in range(2))
    assert (a.classifier.weight == b.classifier.weight).all()


def test_unknown_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match=r"^model\.name_or_path: .* is not a model directory"):
        load_classifier(model_cfg(tmp_path / "missing", {}), ["a"], seed=0)
    with pytest.raises(PipelineError, match=r"^model\.from_package: Python package 'no_such_pkg' is not installed"):
        load_classifier(
            OmegaConf.create({"name_or_path": "model", "from_package": "no_such_pkg", "revision": None}),
            ["a"],
            seed=0,
        )

"""The task seam: stages, methods and CLIs ask the task; classification details live only in pipeline/tasks/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

from pipeline.errors import PipelineError
from pipeline.methods import get_method
from pipeline.tasks import get_task, registered_tasks, task_of
from pipeline.tasks.classification import Classification, load_classifier
from tests.methods.test_method_zoo import SETS
from tests.methods.test_methods import BERT_SETS, model_cfg

REPO = Path(__file__).resolve().parent.parent
CODE = [p for root in ("pipeline", "hydra_plugins") for p in sorted((REPO / root).rglob("*.py"))]
OUTSIDE_TASKS = [p for p in CODE if (REPO / "pipeline" / "tasks") not in p.parents]


def offenders(pattern: str, files: list[Path]) -> list[str]:
    found = re.compile(pattern)
    return [
        f"{path.relative_to(REPO)}:{n}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if found.search(line)
    ]


def test_only_tasks_name_the_sequence_classification_head_or_its_peft_task_type():
    assert OUTSIDE_TASKS and len(OUTSIDE_TASKS) < len(CODE)
    assert offenders(r"SequenceClassification|SEQ_CLS", OUTSIDE_TASKS) == []


def test_stages_branch_on_no_method_or_task_type():
    stages = sorted((REPO / "pipeline" / "stages").glob("*.py"))
    assert offenders(r"isinstance\(.*(Baseline|Method|Task)", stages) == []
    assert offenders(r"\bBaseline\b", stages) == []


def test_one_helper_loads_saved_datasets():
    assert [o.split(":")[0] for o in offenders(r"load_from_disk\(", CODE)] == ["pipeline/context.py"]


def test_method_defaults_live_only_in_their_dataclasses():
    for path in sorted((REPO / "conf" / "method").glob("*.yaml")):
        keys = set(yaml.safe_load(path.read_text()))
        assert keys == {"defaults"}, f"{path.name} sets {sorted(keys - {'defaults'})}: put defaults in the dataclass"


def test_classification_is_the_default_task_and_unknown_tasks_fail(compose_config):
    assert compose_config([]).task.name == "classification"
    assert [t.name for t in registered_tasks()] == ["causal_lm", "classification", "seq2seq"]
    with pytest.raises(PipelineError, match=r"^task\.name: unknown task 'nope'; expected one of \['causal_lm', "):
        get_task("nope")


def test_a_model_is_matched_to_the_task_of_its_head(tiny_models):
    classifier = load_classifier(model_cfg(tiny_models["bert"], BERT_SETS), ["a", "b"], seed=0)
    assert task_of(classifier).name == "classification"
    tiny = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    assert task_of(LlamaForCausalLM(tiny)).name == "causal_lm"
    with pytest.raises(PipelineError, match=r"^model: LlamaModel has no head of a known task"):
        task_of(LlamaModel(tiny))


@pytest.mark.parametrize("name", ["lora", "ia3", "adapter", "prefix", "vera"])
def test_peft_methods_take_their_task_type_from_the_task(tiny_models, monkeypatch, name):
    method = get_method(name)
    cfg = OmegaConf.structured(method.config_cls())
    mcfg = model_cfg(tiny_models["bert"], SETS["bert"])
    model = load_classifier(mcfg, ["a", "b"], seed=0)
    assert method.model_peft_config(cfg, mcfg, model).task_type == "SEQ_CLS"
    monkeypatch.setattr(Classification, "peft_task_type", "FEATURE_EXTRACTION")
    assert method.model_peft_config(cfg, mcfg, model).task_type == "FEATURE_EXTRACTION"


def test_registering_configs_and_help_import_no_torch_peft_or_bitsandbytes():
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['pipeline', '--help']\n"
        "try:\n"
        "    runpy.run_module('pipeline', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "from pipeline.deferred import DeferredModule\n"
        "loaded = [m for m in ('torch', 'peft', 'bitsandbytes', 'mlflow') if m in sys.modules]\n"
        "heavy = sorted(m for m in loaded if not isinstance(sys.modules[m], DeferredModule))  # deferred: not run\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "\n  task: causal_lm, classification, seq2seq\n" in done.stdout  # the groups, without their schemas
    assert "\n  method: adalora, adapter," in done.stdout and "_schema" not in done.stdout
    assert "HEAVY []" in done.stderr, done.stderr[-2000:]

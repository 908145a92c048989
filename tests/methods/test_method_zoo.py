"""Every registered method on tiny models: it trains, saves and reloads exactly, and counts what it trains."""

from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf
from peft import PeftModel

from pipeline.__main__ import CONF_DIR
from pipeline.errors import PipelineError
from pipeline.methods import Method, applicable_methods, get_method, registered_methods
from pipeline.models import count_parameters
from pipeline.tasks.classification import load_classifier
from tests.methods.test_methods import model_cfg

LABELS = ["a", "b", "c"]
SETS = {
    "bert": {
        "attention_qv": ["query", "value"],
        "ia3": ["key", "value", "output.dense"],
        "ia3_feedforward": ["output.dense"],
    },
    "distilbert": {"attention_qv": ["q_lin", "v_lin"], "ia3": ["k_lin", "v_lin", "lin2"], "ia3_feedforward": ["lin2"]},
}
SETS["bert64"] = SETS["bert"]
SETS["mpnet"] = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "mpnet.yaml").target_module_sets)
NEURAL = [m.name for m in registered_methods() if isinstance(m, Method)]

# Tiny BERT: hidden h=32, 2 layers, intermediate 37, 3 labels; LoRA-family targets are query and value (4 modules).
H, LAYERS, FFN, N_QV = 32, 2, 37, 4
HAND_COUNTED = {
    "lora": N_QV * 16 * (H + H),  # r=16: A (r x in) + B (out x r)
    "dora": N_QV * (16 * (H + H) + H),  # LoRA + one magnitude per output
    "loha": N_QV * 2 * 8 * (H + H),  # r=8: two low-rank pairs
    "adalora": N_QV * (12 * H + H * 12 + 12),  # init_r=12: A, B and the singular values E
    "vera": N_QV * (256 + H),  # r=256: lambda_b (r) + lambda_d (out); the random matrices are frozen buffers
    "ia3": LAYERS * (H + H + H + FFN),  # key and value outputs; attention-output and FFN-output inputs
    "adapter": LAYERS * 2 * (2 * H * 2 + 2 + H),  # Houlsby, bottleneck 32/16=2: down (h*2+2) + up (2*h+h)
    "prompt": 20 * H,  # 20 virtual-token embeddings
    "prefix": 20 * H + (H * 128 + 128) + (128 * LAYERS * 2 * H + LAYERS * 2 * H),  # embeddings + 2-layer MLP
    "ptuning": 20 * H + (H * 128 + 128) + (128 * 128 + 128) + (128 * H + H),  # embeddings + 3-layer MLP
    # Every bias: embeddings LN; per layer q, k, v, attention-out, attention LN, FFN in, FFN out, output LN; pooler.
    "bitfit": H + LAYERS * (3 * H + H + H + FFN + H + H) + H,
}
HEAD = H * 3 + 3  # classifier


def build(tiny_models, kind: str, name: str, **overrides):
    """A method's trainable model on a tiny classifier, with its config."""
    method = get_method(name)
    mcfg = model_cfg(tiny_models[kind], SETS[kind])
    cfg = OmegaConf.structured(method.config_cls(**overrides))
    base = load_classifier(mcfg, LABELS, seed=0, **method.base_load_kwargs(cfg))
    method.check_applicable(base, cfg, mcfg)
    return method, mcfg, cfg, method.wrap(base, cfg, mcfg)


def train_steps(model: torch.nn.Module, steps: int = 8) -> list[float]:
    """A few AdamW steps on one fixed batch, dropout off (so the trend is the optimizer's, not noise)."""
    torch.manual_seed(0)
    ids = torch.randint(5, 30, (6, 12))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.eval()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@torch.inference_mode()
def logits(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.arange(5, 29).reshape(3, 8)
    return model.eval()(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def round_trip(method, mcfg, cfg, model, tmp_path) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the trained model and of its saved-and-reloaded copy."""
    method.save(model, tmp_path / "saved")
    base = load_classifier(mcfg, LABELS, seed=0, **method.base_load_kwargs(cfg))
    return logits(model), logits(one_4bit_kernel(method.load(base, tmp_path / "saved")))


def one_4bit_kernel(model: torch.nn.Module) -> torch.nn.Module:
    """Pin bitsandbytes' 4-bit layers to one CPU kernel.

    On CPUs with AVX512-BF16 bitsandbytes picks a bf16 kernel for some inference calls and an fp32 one for others
    (it depends on whether inputs require grad, which QLoRA's training preparation turns on); the two differ by
    ~1e-2 in the logits, which would hide what this test checks: that the saved adapter reproduces the model.
    Pinned before training, the trained and the reloaded model agree exactly.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


@pytest.mark.parametrize("name", [n for n in NEURAL if n != "qlora"])
def test_method_trains_and_reloads_to_identical_logits(tiny_models, tmp_path, name):
    method, mcfg, cfg, model = build(tiny_models, "bert", name)
    losses = train_steps(model)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    before, after = round_trip(method, mcfg, cfg, model, tmp_path)
    assert torch.equal(before, after)


@pytest.mark.parametrize("name", sorted(HAND_COUNTED))
def test_trainable_parameters_match_hand_computed_counts(tiny_models, name):
    *_, model = build(tiny_models, "bert", name)
    counts = count_parameters(model)
    assert (counts.trainable_method, counts.trainable_head) == (HAND_COUNTED[name], HEAD)
    assert counts.trainable == counts.trainable_method + counts.trainable_head


def test_adapter_placements_and_bottleneck_formula_on_distilbert(tiny_models, tmp_path):
    method, mcfg, cfg, model = build(tiny_models, "distilbert", "adapter", placement="pfeiffer", bottleneck_size=5)
    wrapped = [n for n, m in model.named_modules() if type(m).__name__ == "BottleneckLinear"]
    assert [n.rsplit(".", 2)[-2:] for n in wrapped] == [["ffn", "lin2"]] * 2  # feed-forward only
    assert count_parameters(model).trainable_method == 2 * (H * 5 + 5 + 5 * H + H)
    *_, houlsby = build(tiny_models, "distilbert", "adapter", placement="houlsby", reduction_factor=8)
    assert count_parameters(houlsby).trainable_method == 2 * 2 * (H * 4 + 4 + 4 * H + H)
    method.save(model, tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "adapter_config.json").read_text())["peft_type"] == "BOTTLENECK"
    assert isinstance(method.load(load_classifier(mcfg, LABELS, seed=0), tmp_path / "saved"), PeftModel)


@pytest.mark.parametrize(
    ("name", "overrides", "wrapped"),
    [
        ("lora", {"target_modules": "attention_all"}, ["attn.q", "attn.k", "attn.v", "attn.o"]),
        ("ia3", {}, ["attn.k", "attn.v", "output.dense"]),
        ("adapter", {}, ["attn.o", "output.dense"]),  # Houlsby: after attention and after the feed-forward
    ],
)
def test_mpnet_target_sets_and_adapter_sites_reach_every_layer(tiny_models, tmp_path, name, overrides, wrapped):
    """model=mpnet's YAML names MPNet's modules: each set wraps them in both layers, and the method trains."""
    method, mcfg, cfg, model = build(tiny_models, "mpnet", name, **overrides)
    adapted = {n.removesuffix(".base_layer") for n, m in model.named_modules() if hasattr(m, "base_layer")}
    for layer in range(LAYERS):
        for suffix in wrapped:
            assert any(
                n.endswith(f"layer.{layer}.attention.{suffix}") or n.endswith(f"layer.{layer}.{suffix}")
                for n in adapted
            ), (suffix, sorted(adapted))
    losses = train_steps(model)
    assert losses[-1] < losses[0], losses
    before, after = round_trip(method, mcfg, cfg, model, tmp_path)
    assert torch.equal(before, after)


def test_qlora_quantizes_the_encoder_keeps_the_head_and_reloads(tiny_models, tmp_path):
    method, mcfg, cfg, model = build(tiny_models, "bert64", "qlora", r=4)
    one_4bit_kernel(model)
    base = model.get_base_model()
    assert type(base.bert.encoder.layer[0].attention.self.key).__name__ == "Linear4bit"
    classifier = base.classifier.modules_to_save["default"]
    assert type(classifier) is torch.nn.Linear and classifier.weight.dtype == torch.float32
    counts = count_parameters(model)
    plain = count_parameters(load_classifier(mcfg, LABELS, seed=0))
    assert counts.trainable_method == N_QV * 4 * (64 + 64)
    assert counts.total == plain.total + counts.trainable_method  # 4-bit weights counted as parameters, not bytes
    losses = train_steps(model)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    before, after = round_trip(method, mcfg, cfg, model, tmp_path)
    assert torch.equal(before, after)


def test_prefix_tuning_on_distilbert_stops_and_names_what_works(tiny_models):
    with pytest.raises(PipelineError) as err:
        build(tiny_models, "distilbert", "prefix")
    message = str(err.value)
    assert message.startswith("method.name: prefix cannot run on DistilBertForSequenceClassification: ")
    assert "past_key_values" in message and "lora" in message and "prompt" in message
    assert "prefix" not in message.split("methods that work on it:")[1]
    base = load_classifier(model_cfg(tiny_models["bert"], SETS["bert"]), LABELS, seed=0)
    assert "prefix" in applicable_methods(base)


def test_tfidf_baseline_picks_c_on_validation_and_counts_coefficients(tmp_path):
    from tests.conftest import synthetic_frame

    method = get_method("tfidf_lr")
    cfg = OmegaConf.structured(method.config_cls(c_grid=[0.01, 10.0]))
    frame = synthetic_frame(rows_per_class=30)
    ids = frame["label"].map({"alpha": 0, "beta": 1, "gamma": 2}).tolist()
    texts = frame["text"].tolist()
    fitted, val_f1 = method.fit((texts[:60], ids[:60]), (texts[60:], ids[60:]), cfg, seed=0)
    n_features = len(fitted.named_steps["tfidf"].vocabulary_)
    assert method.n_parameters(fitted) == 3 * n_features + 3
    assert fitted.named_steps["lr"].C == 10.0 and val_f1 == 1.0
    method.save(fitted, tmp_path)
    scores = method.logits(tmp_path, texts[60:])
    assert scores.shape == (30, 3) and (scores.argmax(-1) == ids[60:]).all()


def test_tfidf_baseline_rejects_an_empty_c_grid_before_fitting():
    method = get_method("tfidf_lr")
    cfg = OmegaConf.structured(method.config_cls(c_grid=[]))
    with pytest.raises(PipelineError, match=r"^method\.c_grid: "):
        method.fit((None, None), (None, None), cfg, seed=0)  # never reaches the vectorizer

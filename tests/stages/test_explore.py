"""explore's UMAP: numba's compiled code is cached on disk, so a second process compiles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Fits UMAP as the explore stage does, then reports umap/pynndescent's numba cache hits and misses (of functions
# compiled on first call) and the points.
FIT = """
import json, sys
import numpy as np
from numba.core.dispatcher import Dispatcher
from pipeline.stages.explore import project

points = project(np.random.RandomState(0).randn(60, 16).astype("float32"), 5, 0.1, 0, sys.argv[1])
dispatchers = [o for name, m in list(sys.modules.items()) if name.partition(".")[0] in ("umap", "pynndescent")
               for o in vars(m).values() if isinstance(o, Dispatcher)]
hits = sum(sum(d.stats.cache_hits.values()) for d in dispatchers)
# the few with explicit signatures compile eagerly at import, before the stage can enable their caching
misses = sum(sum(d.stats.cache_misses.values()) for d in dispatchers if d._can_compile)
print(json.dumps({"hits": hits, "misses": misses, "points": points.tolist()}))
"""


def fit_in_new_process(cache_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}  # the stage's own location
    done = subprocess.run(
        [sys.executable, "-c", FIT, str(cache_dir)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow  # two cold UMAP compiles, ~46 s: kept out of the default suite's 12-minute budget
def test_a_second_process_loads_umaps_compiled_code_and_projects_identically(tmp_path):
    first = fit_in_new_process(tmp_path)
    second = fit_in_new_process(tmp_path)
    assert first["misses"] >= 5  # compiled (UMAP's layout, kNN and membership functions), written under the cache
    assert list((tmp_path / "numba").glob("numba*-umap-learn*-pynndescent*"))
    assert second["misses"] == 0 and second["hits"] >= first["misses"]
    assert second["points"] == first["points"]


def test_precision_auto_follows_the_hardware_and_cpu_bf16_only_where_asked(monkeypatch):
    from pipeline import inference

    assert inference.resolved_precision("fp32") == "fp32" and inference.resolved_precision("bf16") == "bf16"
    monkeypatch.setattr(inference.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(inference, "native_bf16", lambda: True)
    assert inference.resolved_precision("auto", cpu_bf16=True) == "bf16"  # explore's embeddings
    assert inference.resolved_precision("auto") == "fp32"  # training on a CPU
    monkeypatch.setattr(inference, "native_bf16", lambda: False)
    assert inference.resolved_precision("auto", cpu_bf16=True) == "fp32"
    monkeypatch.setattr(inference.torch.cuda, "is_available", lambda: True)  # a GPU that only emulates bf16
    assert inference.resolved_precision("auto") == "fp32"


def test_bf16_embeddings_are_fp32_arrays_within_plotting_precision_of_fp32(tiny_models):
    """bf16 really runs (the vectors differ from fp32's), yet each stays within ~1% of its fp32 direction."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.inference import autocast, device, embed

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"])
    words = list(tokenizer.get_vocab())[5:]
    texts = [" ".join(words[i : i + 3 + i % 7]) for i in range(20)]
    rows = Dataset.from_dict(dict(tokenizer(texts)))
    fp32 = embed(model, rows, tokenizer, 8, "mean")
    with autocast("bf16"):
        bf16 = embed(model, rows, tokenizer, 8, "mean")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)
    cosine = (bf16 * fp32).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cosine.min() > 0.99
    kind = device().type
    with autocast("bf16"):
        assert torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16
    with autocast("fp32"):
        assert not torch.is_autocast_enabled(kind)
    assert not torch.is_autocast_enabled(kind)
    with pytest.raises(ValueError, match="precision: 'auto'"):
        autocast("auto")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_a_prompt_tuned_model_is_pooled_over_the_rows_own_tokens(tiny_models, pooling):
    """Prompt tuning prepends virtual tokens to the hidden states: the row's mask and its CLS are after them."""
    import numpy as np
    import torch
    from datasets import Dataset
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.inference import embed

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"])
    model = get_peft_model(base, PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=5)).eval()
    texts = ["alpha beta", "gamma delta epsilon zeta eta", "theta"]
    vectors = embed(model, Dataset.from_dict(dict(tokenizer(texts))), tokenizer, 8, pooling)
    for text, vector in zip(texts, vectors, strict=True):
        one = tokenizer([text], return_tensors="pt")  # alone: no padding
        with torch.inference_mode():
            hidden = model(**one, output_hidden_states=True).hidden_states[-1][0, 5:]  # after the 5 virtual tokens
        expected = hidden[0] if pooling == "cls" else hidden.mean(0)
        np.testing.assert_allclose(vector, expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_pooling_takes_each_rows_last_real_token_whichever_side_pads(tiny_generative, side):
    """A decoder-only model has read the whole row only at its last token; padding must not be taken for it.

    Left padding shifts a row's positions; Llama's rotary embeddings depend only on relative positions, so the row
    padded and alone give the same states here (a model with absolute positions would need position ids)."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.inference import embed

    tokenizer = AutoTokenizer.from_pretrained(tiny_generative["llama"], padding_side=side)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_generative["llama"]).eval()
    texts = ["alpha beta", "gamma delta epsilon zeta eta", "theta"]
    vectors = embed(model, Dataset.from_dict(dict(tokenizer(texts))), tokenizer, 8, "last")
    for text, vector in zip(texts, vectors, strict=True):
        with torch.inference_mode():
            hidden = model(**tokenizer([text], return_tensors="pt"), output_hidden_states=True).hidden_states[-1]
        np.testing.assert_allclose(vector, hidden[0, -1].numpy(), rtol=1e-4, atol=1e-5)

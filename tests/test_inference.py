"""Parity checks compare logits in IEEE fp32 even after the Trainer switched the process to TF32."""

from __future__ import annotations

import pytest
import torch

from pipeline.inference import exact_fp32


@pytest.fixture
def tf32_process():
    """The state a GPU training run leaves behind: transformers sets TF32 for the whole process."""
    saved = torch.backends.fp32_precision
    torch.backends.fp32_precision = "tf32"
    yield
    torch.backends.fp32_precision = saved


def test_exact_fp32_turns_tf32_off_inside_and_restores_it_even_on_error(tf32_process):
    with exact_fp32():
        assert torch.backends.fp32_precision == "ieee"
    assert torch.backends.fp32_precision == "tf32"
    with pytest.raises(RuntimeError), exact_fp32():
        raise RuntimeError("a failing parity check")
    assert torch.backends.fp32_precision == "tf32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 exists only on CUDA")
def test_exact_fp32_matmul_on_gpu_matches_float64_where_tf32_does_not(tf32_process):
    a, b = (torch.randn(512, 512, generator=torch.Generator().manual_seed(i)).cuda() for i in (0, 1))
    exact = (a.double() @ b.double()).float()
    tf32_error = float((a @ b - exact).abs().max())
    with exact_fp32():
        ieee_error = float((a @ b - exact).abs().max())
    assert ieee_error < 1e-3 < tf32_error

"""train: the periodic-validation budget and the resumable length-grouped sampler."""

from __future__ import annotations

from datasets import Dataset

from pipeline.config import TrainConfig
from pipeline.finetune import EVAL_MIN_ROWS, SeededLengthGroupedSampler, validation_rows


def test_validation_budget_scales_with_training_and_is_capped():
    t = TrainConfig()  # 4 validations, budget 0.12 x rows trained, 200 to 2000 rows each
    assert validation_rows(t, n_train=6080, n_validation=760) == EVAL_MIN_ROWS  # 0.12 * 6080 / 4 = 182: the floor
    assert validation_rows(t, n_train=20_000, n_validation=5000) == 800  # 1250 steps, every 313: 3 validations
    assert validation_rows(t, n_train=108_000, n_validation=12_000) == 2000  # the reference: the cap applies
    assert validation_rows(t, n_train=800, n_validation=5000) == EVAL_MIN_ROWS  # never fewer than the floor
    assert validation_rows(t, n_train=800, n_validation=50) == 50  # never more than exist


def test_length_grouped_order_depends_only_on_seed_and_epoch():
    data = Dataset.from_dict({"input_ids": [[1] * (i % 7 + 1) for i in range(64)]})
    lengths = [len(ids) for ids in data["input_ids"]]
    a, b = (SeededLengthGroupedSampler(8, data, lengths, seed=3) for _ in range(2))
    list(a)  # consuming epoch 0 must not change what epoch 1 yields
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert list(a) != list(b)


def test_resume_skips_and_removes_checkpoints_interrupted_mid_write(tmp_path, caplog):
    from pipeline.finetune import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "none") is None
    for step, state in ((40, '{"global_step": 40}'), (80, '{"global_st'), (120, None), (100, '{"global_step": 100}')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    # 120 (no state file) and 80 (state cut short) are not usable; 100 is the latest that is, numerically.
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-100"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-100", "checkpoint-40", "checkpoint-80"]
    assert "checkpoint-120 was interrupted while being written: removed" in caplog.text


def test_peak_memory_counts_from_its_reset_not_from_an_earlier_trial():
    """A sweep's trials share a process: a trial's peak must not be an earlier trial's (CPU: Linux's VmHWM)."""
    import sys

    import pytest
    import torch

    from pipeline.stages.train import peak_memory_mb, reset_peak_memory

    if not sys.platform.startswith("linux") or torch.cuda.is_available():
        pytest.skip("host memory: resetting the peak RSS needs Linux's /proc/self/clear_refs")
    earlier = bytearray(400 * 2**20)  # an earlier trial's 400 MB, touched, then freed
    del earlier
    before = peak_memory_mb()
    reset_peak_memory()
    after = peak_memory_mb()
    assert before - after > 300, (before, after)
    bytearray(200 * 2**20)
    assert peak_memory_mb() - after > 150

"""Paired-bootstrap intervals and tests: the resampled metrics agree with each task's own scores, the intervals have
the width statistics predicts, and a comparison built from a sweep reports them and reads them rightly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.bootstrap import interval, paired_p_value, resample_index
from pipeline.compare import collect, compare, reading, to_markdown
from pipeline.metrics import classification_metrics, generation_metrics
from pipeline.tasks import get_task

CLASSES = 4


def test_classification_point_estimate_equals_its_score_even_with_a_class_absent():
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 3, 200)  # class 3 never occurs, and is predicted a few times
    predicted = np.where(rng.random(200) < 0.7, reference, rng.integers(0, CLASSES, 200))
    rows = {"reference": reference, "predicted": predicted, "n_classes": np.asarray(CLASSES)}
    point = get_task("classification").resampled_metrics(rows, np.arange(200)[None])
    expected = classification_metrics(predicted, reference, [str(c) for c in range(CLASSES)])
    assert point["accuracy"][0] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert point["f1_macro"][0] == pytest.approx(expected["f1_macro"], abs=1e-12)


def test_generative_point_estimate_equals_its_score():
    predictions = ["the cat sat", "stocks fall again", "", "rain in the north"]
    references = ["the cat sat down", "stocks fall", "a title", "rain in the north"]
    per_row = generation_metrics(predictions, references)
    nll, tokens = np.array([3.0, 1.5, 9.0, 0.5]), np.array([4, 3, 2, 4])
    rows = {**{k: np.asarray(v) for k, v in per_row["per_row"].items()}, "nll": nll, "n_tokens": tokens}
    point = get_task("causal_lm").resampled_metrics(rows, np.arange(4)[None])
    for name in ("rougeL", "rouge1", "rouge2", "exact_match"):
        assert point[name][0] == pytest.approx(per_row[name], abs=1e-9)
    assert point["perplexity"][0] == pytest.approx(math.exp(nll.sum() / tokens.sum()))


def test_an_accuracy_interval_has_the_binomial_width():
    """760 rows at 80% accuracy: the 95% interval spans about 2 x 1.96 x sqrt(0.8 x 0.2 / 760) = 0.057."""
    correct = np.random.default_rng(2).random(760) < 0.8
    samples = correct[resample_index(760)].mean(1)
    low, high = interval(samples)
    assert low < correct.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt(0.8 * 0.2 / 760), rel=0.12)


def test_paired_p_value_tells_identical_runs_from_a_clearly_better_one():
    index = resample_index(500)
    correct = np.random.default_rng(3).random(500) < 0.75
    assert paired_p_value(correct[index].mean(1) - correct[index].mean(1)) == 1.0
    better = correct | (np.random.default_rng(4).random(500) < 0.3)  # right on every row the first is, and more
    p = paired_p_value(better[index].mean(1) - correct[index].mean(1))
    assert p == pytest.approx(1 / (len(index) + 1) * 2)  # no resample where it is not better: the smallest p


def _fake_run(run_dir: Path, method: str, seed: int, correct_share: float, test_rows: str = "rows-42") -> None:
    """A finished run's files as compare reads them: summary, split report, per-row test scores, Hydra config."""
    rng = np.random.default_rng(seed * 100 + len(method))
    reference = np.arange(400) % CLASSES
    predicted = np.where(rng.random(400) < correct_share, reference, (reference + 1) % CLASSES)
    accuracy = float((predicted == reference).mean())
    f1 = classification_metrics(predicted, reference, [str(c) for c in range(CLASSES)])["f1_macro"]
    (run_dir / "split").mkdir(parents=True)
    (run_dir / "evaluate").mkdir()
    (run_dir / ".hydra").mkdir()
    stages = {
        "evaluate": {"test_accuracy": accuracy, "test_f1_macro": f1},
        "train": {"params_trainable_method": 1000 * (1 + len(method)), "params_trainable_head": 100},
    }
    summary = {"method": method, "task": "classification", "stages": stages}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "split" / "report.json").write_text(json.dumps({"index_sha256": {"test": test_rows}}))
    np.savez(run_dir / "evaluate" / "test_rows.npz", reference=reference, predicted=predicted, n_classes=CLASSES)
    OmegaConf.save(OmegaConf.create({"seed": seed, "method": {"name": method}}), run_dir / ".hydra" / "config.yaml")
    overrides = [f"method={method}", f"seed={seed}", "hydra.sweep.dir=x"]
    OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")


def test_comparison_reports_intervals_paired_tests_and_a_reading_that_follows_them(tmp_path):
    sweep = tmp_path / "sweep"
    _fake_run(sweep / "0_lora", "lora", 42, 0.90)
    _fake_run(sweep / "1_adapter", "adapter", 42, 0.895)  # within noise of lora
    _fake_run(sweep / "2_bitfit", "bitfit", 42, 0.70)  # clearly worse
    _fake_run(sweep / "3_full", "full", 42, 0.99, test_rows="other-rows")  # scored on other rows: not paired
    (sweep / "4_prefix").mkdir()
    (sweep / "4_prefix" / "error.txt").write_text("method.name: prefix cannot run on ...\n")
    (sweep / "studies").mkdir()  # not a run: holds none of a run's files
    frame = collect(sweep)
    assert frame["method"].tolist() == ["full", "lora", "adapter", "bitfit", "prefix"]
    ok = frame[frame["status"] == "ok"]
    assert (ok["test_accuracy_low"] < ok["test_accuracy"]).all() and (
        ok["test_accuracy"] < ok["test_accuracy_high"]
    ).all()
    assert (ok["test_f1_macro_low"] <= ok["test_f1_macro_high"]).all()
    assert frame["p_vs_best"].isna().all()  # the best (full) shares its test rows with no other run
    text = reading(frame, get_task("classification"))
    assert (
        text.startswith("Best by test accuracy: full, ")
        and "3 run(s) have no per-row test scores or were scored on other" in text
    )

    (sweep / "3_full" / "summary.json").unlink()  # now lora is best, and the others were scored on its rows
    frame = collect(sweep).set_index("method")
    assert frame.loc["adapter", "p_vs_best"] > 0.05 and frame.loc["bitfit", "p_vs_best"] < 0.001
    text = reading(frame.reset_index(), get_task("classification"))
    assert "Not distinguishable from it (paired bootstrap, p >= 0.05): adapter;" in text
    assert "Worse than it (p < 0.05): bitfit." in text
    markdown = to_markdown(frame.reset_index())
    low, high = frame.loc["lora", ["test_accuracy_low", "test_accuracy_high"]]
    assert f"| lora | ok | {frame.loc['lora', 'test_accuracy']:.4f} [{low:.4f}, {high:.4f}] |" in markdown
    assert "| <0.001 |" in markdown and "seed" not in markdown.splitlines()[0]  # one seed: no seed column


def test_a_setting_repeated_under_seeds_gets_mean_and_sd(tmp_path):
    sweep = tmp_path / "sweep"
    for i, seed in enumerate([42, 43, 44]):
        _fake_run(sweep / f"{2 * i}_lora", "lora", seed, 0.9, test_rows=f"rows-{seed}")
        _fake_run(sweep / f"{2 * i + 1}_bitfit", "bitfit", seed, 0.7, test_rows=f"rows-{seed}")
    out = compare(sweep)
    frame = pd.read_csv(out / "comparison.csv")
    assert frame["test_accuracy_low"].notna().all()  # every run has its own interval, whatever its rows
    seeds = pd.read_csv(out / "seeds.csv")
    assert seeds["method"].tolist() == ["lora", "bitfit"] and (seeds["n_seeds"] == 3).all()
    lora = frame[frame["method"] == "lora"]["test_accuracy"]
    assert seeds.loc[0, "test_accuracy_mean"] == pytest.approx(lora.mean())
    assert seeds.loc[0, "test_accuracy_std"] == pytest.approx(lora.std(ddof=1))
    markdown = (out / "comparison.md").read_text()
    assert "| seed | setting |" in markdown.splitlines()[0]  # both vary, so both are shown
    assert "Across seeds (mean ± sample sd):" in markdown and "| lora | method=lora | 3 |" in markdown

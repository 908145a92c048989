"""What a run prints: a line per stage, formatted training logs, the closing summary, no library noise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.console import before_after, format_logs, stage_line, ui_link
from tests.conftest import cli_env, tiny_overrides

REPO = Path(__file__).resolve().parent.parent


def test_trainer_logs_read_as_one_line_without_timing_noise():
    line = format_logs({"eval_loss": 1.2039, "eval_accuracy": 0.675, "eval_runtime": 1.8, "epoch": 0.325}, 13, 50)
    assert line == "validation @ step 13/50 (epoch 0.33): loss 1.204, accuracy 0.675"
    assert format_logs({"loss": 0.76, "learning_rate": 4e-05, "epoch": 1.25}, 50, 50) == (
        "train @ step 50/50 (epoch 1.25): loss 0.76, learning_rate 4.00e-05"
    )
    assert format_logs({"train_loss": 0.99, "train_runtime": 31.7}, 50, 50).startswith("training done @ step 50/50")


def test_stage_lines_and_summary_pick_the_figures_that_matter():
    metrics = {"steps": 380, "samples_per_s": 38.04, "peak_memory_mb": 2000.0, "wall_s": 175.94}
    assert stage_line("train", metrics, None) == "train: done in 175.9 s: steps 380, samples_per_s 38.04"
    assert stage_line("split", {"cache_hit": 1, "wall_s": 0.1}, None) == "split: done in 0.1 s (from cache)"
    assert stage_line("explore", {"wall_s": 0.0}, "no label column") == "explore: skipped (no label column)"
    assert before_after({"base_test_accuracy": 0.221, "test_accuracy": 0.888}, "accuracy") == (
        "test accuracy 0.221 -> 0.888"
    )
    assert before_after({}, "rougeL") is None
    assert ui_link("http://127.0.0.1:5055", "3", "abc") == "http://127.0.0.1:5055/#/experiments/3/runs/abc"
    assert "make ui" in ui_link("sqlite:////x/outputs/mlflow.db", "1", "abc")
    assert "mlflow ui --backend-store-uri sqlite:////tmp/m.db" in ui_link("sqlite:////tmp/m.db", "1", "abc")


def test_a_whole_run_prints_each_stage_the_summary_and_no_library_noise(tmp_path, tiny_models, synthetic_csv):
    out = tmp_path / "out"
    overrides = [*tiny_overrides(tiny_models["bert"], synthetic_csv, out), f"hydra.run.dir={tmp_path / 'run'}"]
    env = {k: v for k, v in cli_env().items() if k != "PYTHONWARNINGS"} | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-3000:]
    stages = ["split", "tokenize", "train", "explore", "evaluate", "errors", "merge", "export"]
    for i, stage in enumerate(stages, start=1):
        assert f"[{i}/8] {stage} ..." in console and f"[{i}/8] {stage}: done in " in console, stage
    assert "validation @ step 20/80" in console and "{'eval_loss'" not in console  # formatted, not raw dicts
    assert "result: test accuracy " in console and f"run directory: {tmp_path / 'run'}" in console
    assert "/#/experiments/" in console
    for noise in ("UserWarning", "FutureWarning", "Quantization parameters for tensor", "Loading weights"):
        assert noise not in console, noise
    assert "\x1b[A" not in console  # stderr is no terminal here: no cursor-up codes from a nested validation bar


def test_datasets_bars_are_off_whether_it_is_imported_before_or_after_the_run_starts():
    """quiet_libraries must not import datasets (start-up), yet its bars stay off once the split stage imports it."""
    probe = (
        "import sys; from pipeline.console import quiet_libraries; {before}quiet_libraries(); "
        "assert ('datasets' in sys.modules) == {imported}; import datasets; "
        "print(datasets.utils.are_progress_bars_disabled())"
    )
    env = cli_env()
    env.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    for before, imported in (("", False), ("import datasets; ", True)):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(before=before, imported=imported)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr[-2000:]


def test_long_inference_loops_show_a_bar_and_short_ones_print_nothing(monkeypatch, capsys, tiny_models):
    """Evaluation, explore and export passes count rows on a bar once they run past the delay; tests and small
    subsets (under it) print nothing."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline import console
    from pipeline.inference import predict_logits

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    rows = Dataset.from_dict(dict(tokenizer(["a short row", "a somewhat longer row of words", "x"] * 5)))
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"])
    capsys.readouterr()  # transformers' own loading bar
    quick = predict_logits(model, rows, tokenizer, 4)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(console, "PROGRESS_DELAY_S", 0.0)
    shown = predict_logits(model, rows, tokenizer, 4)
    bar = capsys.readouterr().err
    assert "logits:" in bar and "/15 " in bar and "rows/s" in bar, bar  # named, counting the 15 rows
    assert (shown == quick).all()  # the bar changes nothing in the outputs or their order


def test_training_stopped_inside_a_callback_closes_its_bar(tiny_models, tmp_path):
    """A pruned trial stops in a callback; its bar must not stay open under the next trial's (ESC[A in sweep logs)."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback, TrainingArguments

    from pipeline.finetune import ConsoleProgress, PipelineTrainer

    class StopAtStep2(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("stopped at step 2")

    model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert"])
    rows = Dataset.from_dict({"input_ids": [[2, 5, 6, 3]] * 16, "attention_mask": [[1] * 4] * 16, "labels": [0] * 16})
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=5, per_device_train_batch_size=4, report_to=[], disable_tqdm=False
    )
    trainer = PipelineTrainer(model=model, args=args, train_dataset=rows, callbacks=[StopAtStep2()])
    with pytest.raises(RuntimeError, match="stopped at step 2"):
        trainer.train()
    progress = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, ConsoleProgress)]
    assert len(progress) == 1 and progress[0].training_bar is None

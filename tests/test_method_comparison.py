"""Every method through the same stages with the same accounting, and the comparison built from a sweep."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from mlflow import MlflowClient

from pipeline.compare import compare
from pipeline.compare import main as compare_cli
from pipeline.methods import get_method, registered_methods
from pipeline.runner import run_pipeline
from pipeline.ui import links
from tests.conftest import tiny_overrides
from tests.test_cli import run_cli

STAGES = "stages=[split,tokenize,train,explore,evaluate,errors,merge,export]"  # all of them, as a default run
ACCOUNTING = {
    "params_total",
    "params_trainable",
    "params_trainable_method",
    "params_trainable_head",
    "params_trainable_pct",
    "wall_s",
    "samples_per_s",
    "peak_memory_mb",
    "saved_mb",
    "best_val_metric",
}


def method_overrides(tiny_models, synthetic_csv, out, name: str) -> list[str]:
    """Tiny-model overrides at the method's own learning rate (QLoRA needs the 64-wide model)."""
    model = tiny_models["bert64" if name == "qlora" else "bert"]
    overrides = [o for o in tiny_overrides(model, synthetic_csv, out) if not o.startswith("train.learning_rate")]
    return [
        *overrides,
        f"method={name}",
        STAGES,
        "train.max_steps=20",
        "train.eval_steps=10",
        "stage.export.int8=false",
    ]


@pytest.mark.parametrize("name", [m.name for m in registered_methods()])
def test_every_method_runs_the_same_stages_with_the_same_accounting(
    tmp_path_factory, tiny_models, synthetic_csv, compose_config, name
):
    out = tmp_path_factory.getbasetemp() / "methods"  # one output dir: split and tokenize come from the cache
    run_dir = out / name
    results = run_pipeline(compose_config(method_overrides(tiny_models, synthetic_csv, out, name)), run_dir)
    method = get_method(name)
    train = results["train"].metrics()
    assert ACCOUNTING <= set(train) and all(math.isfinite(v) for v in train.values())
    assert train["params_trainable"] == train["params_trainable_method"] + train["params_trainable_head"] > 0
    assert 0 < train["saved_mb"] and 0 < train["samples_per_s"]
    accuracy = results["evaluate"].metrics()["test_accuracy"]
    assert 0.0 <= accuracy <= 1.0
    explored = results["explore"].silhouette  # the trained model's embeddings too, virtual tokens or not
    assert ("trained" in explored) == (method.explore_skip_reason is None) and "base" in explored
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == name and summary["stages"]["train"]["params_trainable_method"] > 0
    if method.merge_skip_reason:
        assert results["merge"].skipped_reason == summary["skipped"]["merge"] == method.merge_skip_reason
    else:
        assert results["merge"].max_abs_diff < 1e-4
    if method.export_skip_reason:
        assert summary["skipped"]["export"] == method.export_skip_reason
        assert not (run_dir / "export").exists()
    else:
        fp32 = results["export"].variants["fp32"]
        assert fp32["max_abs_logit_diff"] < 1e-4
        if name != "qlora":  # QLoRA ships its adapter on the full-precision base; it was evaluated on the 4-bit one
            assert fp32["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)


def test_comparison_table_and_plot_from_a_sweep_with_a_failed_run(tmp_path, tiny_models, synthetic_csv, compose_config):
    sweep = tmp_path / "sweep"
    for i, name in enumerate(["tfidf_lr", "bitfit"]):
        overrides = method_overrides(tiny_models, synthetic_csv, tmp_path / "out", name)
        run_pipeline(compose_config([*overrides, "stages=[split,tokenize,train,evaluate]"]), sweep / f"{i}_{name}")
    (sweep / "2_prefix").mkdir()
    (sweep / "2_prefix" / "error.txt").write_text("method.name: prefix cannot run on DistilBert...\n")
    out = compare(sweep)
    table = pd.read_csv(out / "comparison.csv")
    assert table["method"].tolist()[2] == "prefix"  # failed runs last
    assert set(table["method"][:2]) == {"tfidf_lr", "bitfit"} and (table["status"][:2] == "ok").all()
    assert table["test_accuracy"][0] >= table["test_accuracy"][1]  # sorted best first
    assert "cannot run on DistilBert" in table.loc[2, "note"]
    markdown = (out / "comparison.md").read_text()
    assert markdown.startswith("| method | status | test_accuracy") and "| tfidf_lr | ok |" in markdown
    assert (out / "accuracy_vs_params.png").stat().st_size > 10_000
    assert compare_cli([str(sweep)]) == 0  # rebuilds the same table by hand
    assert pd.read_csv(out / "comparison.csv").equals(table)
    assert compare_cli([str(tmp_path / "nope")]) == 2


def test_compare_experiment_sweeps_methods_and_a_bad_combination_does_not_stop_it(tmp_path, tiny_models, synthetic_csv):
    overrides = [
        o
        for o in tiny_overrides(tiny_models["distilbert"], synthetic_csv, tmp_path / "out", kind="distilbert")
        if not o.startswith(("train.learning_rate", "tracking.experiment"))
    ]
    result = run_cli(
        "--multirun",
        "+experiment=agnews_compare",
        *overrides,
        "stages=[split,tokenize,train,evaluate]",
        "train.max_steps=10",
        "train.eval_steps=5",
        "hydra.sweeper.params.method='prefix,tfidf_lr'",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sweep" / "comparison" / "comparison.csv")
    assert table.set_index("method")["status"].to_dict() == {"tfidf_lr": "ok", "prefix": "failed"}
    assert "methods that work on it: " in table.set_index("method").loc["prefix", "note"]
    assert table.loc[0, "test_accuracy_low"] <= table.loc[0, "test_accuracy"] <= table.loc[0, "test_accuracy_high"]

    # MLflow, as the UI shows it: one parent per sweep carrying the table, the method runs under it
    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("agnews_compare")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # runs view, not GenAI overview
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"tfidf_lr", "prefix", f"comparison {tmp_path.name}/sweep"}
    parent = runs.pop(f"comparison {tmp_path.name}/sweep")
    note = parent.data.tags["mlflow.note.content"]  # the run page's description: the reading, then a short table
    assert parent.info.status == "FINISHED" and note.startswith("Best by test accuracy: tfidf_lr, ")
    assert "| tfidf_lr | ok |" in note and "total_params" not in note
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parent.info.run_id}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")} >= {
        "comparison/comparison.md",
        "comparison/accuracy_vs_params.png",
    }
    headline = runs["tfidf_lr"].data.metrics
    assert headline["test_accuracy"] == headline["evaluate/test_accuracy"] == table.loc[0, "test_accuracy"]
    assert {"test_f1_macro", "trainable_pct", "samples_per_s", "saved_mb"} <= set(headline)
    # what `make ui` prints first: the latest experiment's runs, best first, and its charts
    shown = links(client.tracking_uri, "http://127.0.0.1:5000")
    runs_view = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
    assert shown[1] == "  latest experiment, agnews_compare:"
    assert shown[2] == f"    runs by test_accuracy: {runs_view}?orderByKey=metrics.%60test_accuracy%60&orderByAsc=false"
    assert shown[3].endswith("&compareRunsMode=CHART")

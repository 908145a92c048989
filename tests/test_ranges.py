"""Values out of their field's range fail before any work, with one line naming the field and what is allowed."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.config import Config
from pipeline.errors import PipelineError
from pipeline.ranges import Range, check_ranges
from tests.test_cli import run_cli

BAD = [
    ("train.max_steps=-5", "train.max_steps: -5 is out of range; expected -1 (train by train.epochs) or a value > 0"),
    ("train.max_steps=0", "train.max_steps: 0 is out of range"),
    ("train.batch_size=0", "train.batch_size: 0 is out of range; expected a value > 0"),
    ("train.learning_rate=-1", "train.learning_rate: -1.0 is out of range; expected a value > 0"),
    (
        "train.gradient_accumulation_steps=0",
        "train.gradient_accumulation_steps: 0 is out of range; expected a value >= 1",
    ),
    ("train.epochs=0", "train.epochs: 0.0 is out of range"),
    ("train.eval_steps=0", "train.eval_steps: 0.0 is out of range"),
    ("train.warmup_steps=-1", "train.warmup_steps: -1.0 is out of range; expected a value >= 0"),
    ("model.max_length=0", "model.max_length: 0 is out of range; expected a value > 0"),
    ("method.r=0", "method.r: 0 is out of range; expected a value > 0"),
    ("method.r=-4", "method.r: -4 is out of range"),
    ("method.dropout=1.0", "method.dropout: 1.0 is out of range; expected a value in [0, 1)"),
    ("method=prefix method.num_virtual_tokens=0", "method.num_virtual_tokens: 0 is out of range"),
    ("method=adapter method.bottleneck_size=0", "method.bottleneck_size: 0 is out of range"),
    ("data.validation_fraction=1.5", "data.validation_fraction: 1.5 is out of range; expected a value in (0, 0.5)"),
    ("data.test_fraction=0", "data.test_fraction: 0.0 is out of range"),
    ("data.max_samples=0", "data.max_samples: 0 is out of range"),
    ("seed=-1", "seed: -1 is out of range; expected a value in [0, 4.29497e+09]"),
    ("stage.explore.n_neighbors=1", "stage.explore.n_neighbors: 1 is out of range; expected a value >= 2"),
    ("stage.evaluate.batch_size=0", "stage.evaluate.batch_size: 0 is out of range"),
    ("stage.export.atol=-1", "stage.export.atol: -1.0 is out of range"),
    ("task=causal_lm task.generate.max_new_tokens=0", "task.generate.max_new_tokens: 0 is out of range"),
    ("task=causal_lm task.generate.top_p=0", "task.generate.top_p: 0.0 is out of range; expected a value in (0, 1]"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD)
def test_a_value_out_of_range_names_its_field(compose_config, overrides, message):
    cfg = compose_config(["+experiment=agnews_lora", *overrides.split()])
    with pytest.raises(PipelineError) as raised:
        check_ranges(cfg)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("overrides", ["", "method=full", "method=tfidf_lr", "task=seq2seq method=prefix", "seed=0"])
def test_defaults_are_in_range(compose_config, overrides):
    check_ranges(compose_config(["+experiment=agnews_lora", *overrides.split()]))


def test_every_declared_default_is_in_its_own_range():
    def walk(schema: type) -> None:
        for f in dataclasses.fields(schema):
            allowed = f.metadata.get("range")
            if allowed is not None and f.default is not None:
                assert allowed.allows(f.default), f"{schema.__name__}.{f.name}"
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
                walk(f.default_factory)

    walk(Config)
    assert Range(low=0, low_open=True, also=-1).allows(-1) and not Range(low=0, low_open=True).allows(0)


def test_the_cli_rejects_it_before_writing_anything(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "+experiment=agnews_lora", "train.max_steps=-5", f"paths.output_dir={tmp_path}", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: train.max_steps: -5 is out of range; expected -1 (train by train.epochs) or a value > 0"
    ]
    # Nothing but Hydra's own config and log: no manifest, no MLflow store, no stage output.
    assert {p.name for p in run_dir.iterdir()} <= {".hydra", "__main__.log"}
    assert not (tmp_path / "mlflow.db").exists()

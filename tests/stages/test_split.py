"""split: stratified, seeded, deterministic; duplicates found across splits; labels checked."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from pipeline.config import DataConfig
from pipeline.data import RawData
from pipeline.errors import PipelineError
from pipeline.stages.split import find_duplicates
from pipeline.tasks.classification import label_list, make_splits
from tests.conftest import synthetic_frame


def cfg(**kwargs) -> SimpleNamespace:
    return SimpleNamespace(**{**DataConfig().__dict__, **kwargs})


def test_one_pool_is_split_80_10_10_stratified():
    raw = RawData(frames={"all": synthetic_frame(100)})
    labels = label_list(raw)
    splits = make_splits(raw, labels, cfg(), seed=42)
    assert {k: len(v) for k, v in splits.items()} == {"train": 240, "validation": 30, "test": 30}
    for frame in splits.values():
        counts = frame["label_id"].value_counts()
        assert counts.max() - counts.min() <= 1


def test_source_test_split_is_kept_and_validation_carved_from_train():
    raw = RawData(frames={"train": synthetic_frame(100, seed=1), "test": synthetic_frame(10, seed=2)})
    splits = make_splits(raw, label_list(raw), cfg(validation_fraction=0.1), seed=42)
    assert len(splits["test"]) == 30 and set(splits["test"]["origin"]) == {"test"}
    assert (len(splits["train"]), len(splits["validation"])) == (270, 30)


def test_same_seed_same_rows_other_seed_other_rows():
    raw = RawData(frames={"all": synthetic_frame(50)})
    labels = label_list(raw)
    a, b, c = (make_splits(raw, labels, cfg(), seed=s) for s in (7, 7, 8))
    assert a["test"]["source_row"].tolist() == b["test"]["source_row"].tolist()
    assert a["test"]["source_row"].tolist() != c["test"]["source_row"].tolist()


def test_max_samples_caps_rows_stratified():
    raw = RawData(frames={"all": synthetic_frame(100)})
    splits = make_splits(raw, label_list(raw), cfg(max_samples=60), seed=0)
    pool = pd.concat(splits.values())
    assert len(pool) == 60
    assert pool["label_id"].value_counts().tolist() == [20, 20, 20]


@pytest.mark.parametrize(
    ("frame", "data", "message"),
    [
        (
            pd.concat([synthetic_frame(10), pd.DataFrame({"text": ["lonely row"], "label": ["delta"]})]),
            {},
            r"^data\.test_fraction: class 'delta' has 1 row in the pool the test split is drawn from; a stratified",
        ),
        (
            synthetic_frame(10),
            {"max_samples": 2},
            r"^data\.max_samples: the sample would have 2 of 30 rows, too few to hold each of the 3 classes",
        ),
        (synthetic_frame(10), {"max_samples": 3}, r"^data\.max_samples: the test split would have 0 of 3 rows"),
        (synthetic_frame(4), {}, r"^data\.test_fraction: the test split would have 1 of 12 rows, too few to hold"),
    ],
)
def test_too_little_data_to_split_names_the_field_and_the_class(frame, data, message):
    raw = RawData(frames={"all": frame.reset_index(drop=True)})
    with pytest.raises(PipelineError, match=message) as raised:
        make_splits(raw, label_list(raw), cfg(**data), seed=0)
    assert "\n" not in str(raised.value)


def test_cross_split_duplicates_reported_and_dropped():
    splits = {
        "train": pd.DataFrame({"text": ["a", "b", "b"], "label_id": [0, 1, 1]}),
        "validation": pd.DataFrame({"text": ["a", "c"], "label_id": [0, 1]}),
        "test": pd.DataFrame({"text": ["c", "b", "d"], "label_id": [1, 1, 0]}),
    }
    kept, counts, dropped = find_duplicates(dict(splits), drop=True)
    assert counts == {
        "within_train": 1,
        "within_validation": 0,
        "within_test": 0,
        "validation_in_earlier_splits": 1,
        "test_in_earlier_splits": 2,
    }
    assert dropped == 3
    assert kept["test"]["text"].tolist() == ["d"]
    _, _, none_dropped = find_duplicates(dict(splits), drop=False)
    assert none_dropped == 0


def test_label_list_is_numeric_for_int_labels_and_checks_a_given_class_list():
    assert label_list(RawData(frames={"all": pd.DataFrame({"text": list("abc"), "label": [10, 2, 1]})})) == [
        "1",
        "2",
        "10",
    ]
    raw = RawData(frames={"all": pd.DataFrame({"text": list("ab"), "label": ["x", "z"]})}, label_names=["x", "y"])
    with pytest.raises(PipelineError, match=r"^data\.label_column: labels \['z'\] are not in the class list"):
        label_list(raw)


def test_split_stage_outputs(lora_run):
    _, run_dir, results = lora_run
    assert results["split"].sizes == {"train": 288, "validation": 36, "test": 36}
    assert sorted((run_dir / "split" / "labels.json").read_text().split('"')[1::2]) == [
        "alpha",
        "beta",
        "gamma",
    ]

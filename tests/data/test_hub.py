"""The Hub source (what users with network run), exercised with `load_dataset` replaced by a local dataset."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from pipeline.config import DataConfig
from pipeline.data import hub, load_raw
from pipeline.errors import PipelineError


def fake_ag_news(name: str) -> DatasetDict:
    features = Features({"text": Value("string"), "label": ClassLabel(names=["World", "Sports"])})
    rows = {"text": ["match won", "summit held"], "label": [1, 0]}
    return DatasetDict({"train": Dataset.from_dict(rows, features), "test": Dataset.from_dict(rows, features)})


def cfg(**kwargs) -> SimpleNamespace:
    return SimpleNamespace(**{**DataConfig().__dict__, "source": "hub", "name": "fancyzhx/ag_news", **kwargs})


def test_hub_class_label_names_become_the_class_list(monkeypatch):
    monkeypatch.setattr(hub, "load_dataset", fake_ag_news)
    raw = load_raw(cfg())
    assert raw.label_names == ["World", "Sports"]
    assert raw.frames["train"]["label"].tolist() == ["Sports", "World"]
    assert set(raw.frames) == {"train", "test"}


def test_hub_unreachable_is_a_clear_error_pointing_to_offline_sources(monkeypatch):
    def offline(name: str):
        raise ConnectionError("offline")

    monkeypatch.setattr(hub, "load_dataset", offline)
    with pytest.raises(
        PipelineError, match=r"^data\.name: cannot load Hub dataset 'fancyzhx/ag_news'.*data=ag_news_csv"
    ):
        load_raw(cfg())


def test_hub_missing_text_column(monkeypatch):
    monkeypatch.setattr(hub, "load_dataset", fake_ag_news)
    with pytest.raises(PipelineError, match=r"^data\.text_column: column 'body' not in"):
        load_raw(cfg(text_column="body"))

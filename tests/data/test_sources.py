"""Data sources: the AG News CSV format, bring-your-own files, and the errors bad input gets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pipeline.config import DataConfig
from pipeline.data import label_list, load_raw
from pipeline.errors import PipelineError
from tests.conftest import synthetic_frame

AG_ROWS = (
    '"3","Fears for T N pension","Unions say they are ""disappointed"" after talks."\n'
    '"4","Rocket launch","SPACE.com - A second\\team of rocketeers."\n'
    '"1","World news","Leaders meet."\n'
)


def data_cfg(**kwargs) -> SimpleNamespace:
    return SimpleNamespace(**{**DataConfig().__dict__, **kwargs})


def ag_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "classes.txt").write_text("World\nSports\nBusiness\nSci/Tech\n")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_ag_news_csv_joins_title_and_description_like_the_hub_copy(tmp_path):
    raw = load_raw(data_cfg(source="ag_news_csv", dir=str(ag_dir(tmp_path, {"test.csv": AG_ROWS}))))
    frame = raw.frames["all"]  # one file: the split stage carves all three splits from it
    assert frame.loc[0, "text"] == 'Fears for T N pension Unions say they are "disappointed" after talks.'
    assert frame["label"].tolist() == ["Business", "Sci/Tech", "World"]
    assert raw.label_names == ["World", "Sports", "Business", "Sci/Tech"]


def test_ag_news_csv_keeps_train_and_test_when_both_exist(tmp_path):
    raw = load_raw(
        data_cfg(source="ag_news_csv", dir=str(ag_dir(tmp_path, {"train.csv": AG_ROWS, "test.csv": AG_ROWS})))
    )
    assert set(raw.frames) == {"train", "test"}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"test.csv": '"9","t","d"\n'}, "class index '9'; expected 1..4"),
        ({"test.csv": '"1","t"\n'}, "expected class index, title, description"),
        ({"test.csv": '"1","",""\n'}, "empty text"),
        ({}, "neither train.csv nor test.csv"),
    ],
)
def test_ag_news_csv_bad_input_names_the_problem(tmp_path, files, message):
    with pytest.raises(PipelineError, match=message):
        load_raw(data_cfg(source="ag_news_csv", dir=str(ag_dir(tmp_path, files))))


def test_missing_data_directory(tmp_path):
    with pytest.raises(PipelineError, match=r"^data\.dir: directory .* not found"):
        load_raw(data_cfg(source="ag_news_csv", dir=str(tmp_path / "nope")))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".tsv"])
def test_files_source_reads_every_supported_format(tmp_path, suffix):
    frame = synthetic_frame(5).rename(columns={"text": "review", "label": "stars"})
    path = tmp_path / f"d{suffix}"
    {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".tsv": lambda: frame.to_csv(path, sep="\t", index=False),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    raw = load_raw(data_cfg(source="file", path=str(path), text_column="review", label_column="stars"))
    assert raw.frames["all"].columns.tolist() == ["text", "label"]
    assert len(raw.frames["all"]) == 15


def test_files_source_per_split(tmp_path):
    for split in ("train", "test"):
        synthetic_frame(4, seed=len(split)).to_csv(tmp_path / f"{split}.csv", index=False)
    raw = load_raw(
        data_cfg(source="file", train_path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"))
    )
    assert set(raw.frames) == {"train", "test"}


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (
            pd.DataFrame({"body": ["a"], "label": ["x"]}),
            {},
            r"^data\.text_column: column 'text' not in .*columns: body, label",
        ),
        (pd.DataFrame({"text": ["a", " "], "label": ["x", "y"]}), {}, r"^data\.text_column: 1 empty text"),
        (
            pd.DataFrame({"text": ["a", "b"], "label": ["x", None]}),
            {},
            r"^data\.label_column: 1 missing label",
        ),
    ],
)
def test_files_source_bad_content(tmp_path, frame, kwargs, message):
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(PipelineError, match=message):
        load_raw(data_cfg(source="file", path=str(path), **kwargs))


def test_files_source_bad_paths(tmp_path):
    with pytest.raises(PipelineError, match=r"^data\.path: file .* not found"):
        load_raw(data_cfg(source="file", path=str(tmp_path / "missing.csv")))
    with pytest.raises(PipelineError, match=r"^data\.path: file .* is a directory \(expected a \.csv"):
        load_raw(data_cfg(source="file", path=str(tmp_path)))
    with pytest.raises(PipelineError, match=r"^data\.path: file '/dev/null' is not a regular file"):
        load_raw(data_cfg(source="file", path="/dev/null"))
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(PipelineError, match=r"^data\.path: unsupported file type '\.xlsx'"):
        load_raw(data_cfg(source="file", path=str(tmp_path / "d.xlsx")))


def test_labels_of_mixed_types_are_one_class_each(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": f"row {i}", "label": label} for i, label in enumerate([1, "1", 2, "2 ", 1.0, "3"])]
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    raw = load_raw(data_cfg(source="file", path=str(path)))
    assert raw.frames["all"]["label"].tolist() == ["1", "1", "2", "2", "1", "3"]
    assert label_list(raw) == ["1", "2", "3"]


def test_classes_differing_only_in_case_are_named_in_a_warning(tmp_path, caplog):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["Sports", "sports", "World", "Sports"]}).to_csv(path)
    raw = load_raw(data_cfg(source="file", path=str(path)))
    assert label_list(raw) == ["Sports", "World", "sports"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "classes 'Sports' and 'sports' differ only in case or spacing" in warnings[0]


def test_one_class_cannot_make_a_classifier(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["spam", "spam", " spam"]}).to_csv(path)
    with pytest.raises(PipelineError, match=r"^data\.label_column: the data has 1 class \('spam'\); a classifier"):
        load_raw(data_cfg(source="file", path=str(path)))


def test_encoding_numbers_for_text_and_a_corrupt_parquet_get_one_line(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 au lait,a\nth\xe9,b\n".encode("latin-1"))
    with pytest.raises(
        PipelineError, match=r"^data\.path: .* is not utf-8 text \(it holds byte b'\\xe9'\); set data\.encoding"
    ):
        load_raw(data_cfg(source="file", path=str(latin)))
    raw = load_raw(data_cfg(source="file", path=str(latin), encoding="latin-1"))
    assert raw.frames["all"]["text"].tolist() == ["café au lait", "thé"]
    with pytest.raises(PipelineError, match=r"^data\.encoding: 'nope' is not a text encoding"):
        load_raw(data_cfg(source="file", path=str(latin), encoding="nope"))
    numbers = tmp_path / "numbers.csv"
    pd.DataFrame({"text": [1, 2, 3], "label": ["a", "b", "a"]}).to_csv(numbers, index=False)
    with pytest.raises(PipelineError, match=r"^data\.text_column: the text column of all holds int64 values, not"):
        load_raw(data_cfg(source="file", path=str(numbers)))
    good = tmp_path / "good.parquet"
    synthetic_frame(50).to_parquet(good)
    data = good.read_bytes()
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(data[: len(data) // 2] + b"\0" * 64 + data[len(data) // 2 + 64 :])
    with pytest.raises(PipelineError, match=r"^data\.path: cannot read .*broken\.parquet \("):
        load_raw(data_cfg(source="file", path=str(broken)))

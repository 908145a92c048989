"""Thirty-odd user mistakes on the CLI, each as a user makes it: exit 2, one `error: <field>: ...` line on stderr, no
traceback, the MLflow run FAILED if one had started, nothing half-written in the run directory, and an earlier
finished run and the stage cache in the same output directory unchanged, byte for byte.

About 10 s a case (a CLI start each), so behind the slow marker: `make test-slow`. The default suite keeps a few
of them (tests/test_cli.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import synthetic_frame, tiny_overrides
from tests.test_cli import run_cli

pytestmark = pytest.mark.slow
STAGES = "stages=[split,tokenize,train]"


def _files(root: Path) -> dict[str, Path]:
    """Bad input files, written once: a directory, binary noise, a cut parquet, Latin-1 text, one class."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "a_dir").mkdir(exist_ok=True)
    (root / "latin1.csv").write_bytes("text,label\ncaf\xe9 au lait,a\n".encode("latin-1") * 40)
    frame = synthetic_frame(rows_per_class=20)
    frame.to_parquet(root / "full.parquet")
    data = (root / "full.parquet").read_bytes()
    (root / "cut.parquet").write_bytes(data[: len(data) // 2])
    frame.assign(label="alpha").to_csv(root / "one_class.csv", index=False)
    frame.assign(text=range(len(frame))).to_csv(root / "numeric_text.csv", index=False)
    (root / "a_file").write_text("not a directory\n")
    return {p.name: p for p in root.iterdir()}


# (overrides, the field the one error line must start with); {name} is a file from _files
CASES = [
    (["data.path={missing}"], "data.path"),
    (["data.path={a_dir}"], "data.path"),
    (["data.path=/dev/null"], "data.path"),
    (["data.path={cut.parquet}"], "data.path"),
    (["data.path={latin1.csv}"], "data.path"),
    (["data.path={one_class.csv}"], "data.label_column"),
    (["data.path={numeric_text.csv}"], "data.text_column"),
    (["data.text_column=nope"], "data.text_column"),
    (["data.label_column=nope"], "data.label_column"),
    (["data.max_samples=3"], "data.max_samples"),
    (["data.validation_fraction=1.5"], "data.validation_fraction"),
    (["data.test_fraction=-0.1"], "data.test_fraction"),
    (["model.max_length=0"], "model.max_length"),
    (["model.max_length=100000"], "model.max_length"),
    (["model.name_or_path={a_dir}"], "model.name_or_path"),
    (["train.max_steps=0"], "train.max_steps"),
    (["train.max_steps=-5"], "train.max_steps"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.learning_rate=-1"], "train.learning_rate"),
    (["train.gradient_accumulation_steps=0"], "train.gradient_accumulation_steps"),
    (["train.epochs=0"], "train.epochs"),
    (["train.weight_decay=-1"], "train.weight_decay"),
    (["train.warmup_steps=-1"], "train.warmup_steps"),
    (["train.optim=adamw_nope"], "train.optim"),
    (["train.lr_scheduler=cosin"], "train.lr_scheduler"),
    (["method.bias=everything"], "method.bias"),
    (["train.nproc_per_node=0"], "train.nproc_per_node"),
    (["train.nproc_per_node=3", "train.batch_size=16"], "train.batch_size"),
    (["train.nproc_per_node=2", "method=tfidf_lr"], "train.nproc_per_node"),
    (["method.r=0"], "method.r"),
    (["method.r=-4"], "method.r"),
    (["method.alpha=0"], "method.alpha"),
    (["method.target_modules=[query,nope]"], "method.target_modules"),
    (["method=adapter", "method.placement=nope"], "method.placement"),
    (["method=ia3", "method.feedforward_modules=[query]"], "method.feedforward_modules"),
    (["paths.output_dir={a_file}/out"], "paths.output_dir"),
    (["paths.cache_dir={a_file}/cache"], "paths.cache_dir"),
    (["seed=-1"], "seed"),
    (["train.max_stps=5"], "train.max_stps"),
    (["method=nope"], "method"),
    (["train.epochs=("], "train.epochs"),  # override syntax errors: Hydra's own report may not name the key
    (["model.pypi_parts=[a==1]"], "model.pypi_parts"),
    (["tracking.uri=sqlite:///{a_file}"], "tracking.uri"),  # a file that is not a database
    (["tracking.uri=file:///{a_dir}"], "tracking.uri"),  # MLflow 3 refuses a file store
    (["tracking.uri=postgresql://u:p@127.0.0.1:9/db"], "tracking.uri"),  # psycopg 3 is not installed
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    return _files(tmp_path_factory.mktemp("bad"))


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root` by path: a file's SHA-256, or "dir" (so an empty temp dir left behind shows)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in root.rglob("*")
    }


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, tiny_models, synthetic_csv) -> Path:
    """An output directory holding a finished run and its stage cache, which no mistake may touch."""
    out = tmp_path_factory.mktemp("earlier")
    done = run_cli(*tiny_overrides(tiny_models["bert"], synthetic_csv, out), STAGES, f"hydra.run.dir={out / 'done'}")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.mark.parametrize(("overrides", "field"), CASES, ids=[" ".join(o) for o, _ in CASES])
def test_a_user_mistake_exits_2_with_one_line_naming_its_field(
    tmp_path, tiny_models, synthetic_csv, bad_files, earlier, overrides, field
):
    out, run_dir = earlier, tmp_path / "run"
    before = {part: snapshot(out / part) for part in ("done", "cache")}
    assert before["done"] and before["cache"]
    paths = {f"{{{name}}}": str(path) for name, path in bad_files.items()} | {"{missing}": str(tmp_path / "no.csv")}
    mistake = []
    for override in overrides:
        for key, value in paths.items():
            override = override.replace(key, value)
        mistake.append(override)
    result = run_cli(*tiny_overrides(tiny_models["bert"], synthetic_csv, out), *mistake, f"hydra.run.dir={run_dir}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith((f"error: {field}:", f"error: {field} ")), errors[0]  # the offending field first
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id], f"tags.run_dir = '{run_dir.resolve()}'")
    assert all(r.info.status == "FAILED" for r in runs), [r.info.status for r in runs]  # if one started
    done = client.search_runs([experiment.experiment_id], f"tags.run_dir = '{(out / 'done').resolve()}'")
    assert [r.info.status for r in done] == ["FINISHED"]
    assert {part: snapshot(out / part) for part in before} == before  # the earlier run and the cache untouched
    if run_dir.exists():  # only complete files: Hydra's config and log, the manifest (atomic)
        assert {p.name for p in run_dir.iterdir()} <= {".hydra", "__main__.log", "manifest.json"}

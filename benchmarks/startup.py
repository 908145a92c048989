"""Measure start-up and exit: `--help`, `import pipeline.runner`, launch to the first stage line of the offline
command, and its last console line to the process's end.

The first-stage time is from process launch to the `[1/8] split ...` line on the console, with all eight stages
selected (so every pre-stage check runs); the process is stopped there. The exit time is from the last line of
a whole run of split, tokenize and train (one training step) to the process's exit. Each figure is the median
of --repeats.

    python benchmarks/startup.py [--before-repo DIR] [--data-dir DIR] [--out benchmarks] [--repeats 3]
Prints a Markdown table and writes startup.json and startup.md under --out.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, arguments, checkout_env, offline_reference, publish  # noqa: E402

FIRST_STAGE_TIMEOUT_S = 300


def wall(command: list[str], repo: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=repo, env=checkout_env(repo), check=True, capture_output=True)
    return time.perf_counter() - start


def launch(overrides: list[str], repo: Path) -> subprocess.Popen[str]:
    """`python -m pipeline OVERRIDES` of checkout `repo`, its console (stdout and stderr) readable line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *overrides],
        cwd=repo,
        env=checkout_env(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def to_first_stage(overrides: list[str], repo: Path) -> float:
    """Seconds from launch to the first `[1/N] <stage> ...` line; the run is stopped once it appears."""
    start = time.perf_counter()
    proc = launch(overrides, repo)
    try:
        for line in proc.stdout:
            if "[1/" in line:
                return time.perf_counter() - start
            if time.perf_counter() - start > FIRST_STAGE_TIMEOUT_S:
                break
        sys.exit(f"no first stage line from pipeline {' '.join(overrides)} (exit {proc.poll()})")
    finally:
        proc.kill()
        proc.wait()


def last_line_to_exit(overrides: list[str], repo: Path) -> float:
    """Seconds from a run's last console line to its process's end (what the interpreter does after the work)."""
    proc = launch(overrides, repo)
    last = time.perf_counter()
    for _ in proc.stdout:
        last = time.perf_counter()
    if proc.wait() != 0:
        sys.exit(f"pipeline {' '.join(overrides)} in {repo} failed ({proc.returncode})")
    return time.perf_counter() - last


def measure(repo: Path, data_dir: str, repeats: int) -> dict:
    """Medians (and samples) of the start-up and exit figures for checkout `repo`."""
    work = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    runs = [
        [*offline_reference(data_dir, work, "startup_bench"), f"hydra.run.dir={work / f'run{i}'}"]
        for i in range(repeats)
    ]
    samples = {
        "help_s": [wall([sys.executable, "-m", "pipeline", "--help"], repo) for _ in range(repeats)],
        "import_runner_s": [wall([sys.executable, "-c", "import pipeline.runner"], repo) for _ in range(repeats)],
        "launch_to_first_stage_s": [to_first_stage(run, repo) for run in runs],
        "last_line_to_exit_s": [
            last_line_to_exit([*run, "stages=[split,tokenize,train]", "train.max_steps=1"], repo) for run in runs
        ],
    }
    results = {name: round(statistics.median(values), 2) for name, values in samples.items()}
    results["samples"] = {name: [round(v, 2) for v in values] for name, values in samples.items()}
    return results


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before-repo", help="another checkout to measure the same way, for a before/after table")
    args = parser.parse_args()
    repos = {**({"before": Path(args.before_repo).resolve()} if args.before_repo else {}), "after": REPO}
    results = {label: measure(repo, args.data_dir, args.repeats) for label, repo in repos.items()}
    rows = [
        ("`python -m pipeline --help`", "help_s"),
        ("`python -c 'import pipeline.runner'`", "import_runner_s"),
        ("offline reference command, launch to `[1/8] split ...`", "launch_to_first_stage_s"),
        ("split, tokenize, one train step: last console line to exit", "last_line_to_exit_s"),
    ]
    table = "\n".join(
        [
            f"| start-up (median of {args.repeats}, 2 CPU cores), s | {' | '.join(results)} |",
            "|---|" + "---|" * len(results),
            *(f"| {label} | {' | '.join(f'{r[key]:.1f}' for r in results.values())} |" for label, key in rows),
        ]
    )
    publish(args.out, "startup", table, results)


if __name__ == "__main__":
    main()

"""Measure a first run: the offline reference command, all stages, in a new process with an empty stage cache,
then the same command again (stage cache warm).

Reports each stage's wall time and the whole process's, and the process/train ratio. With --before-repo (another
checkout, e.g. `git worktree add /tmp/before <commit>`), that checkout is measured too, in the same run, with the
same venv and data. numba's cache is the one `make setup` fills (`outputs/cache/numba`), as after a fresh setup.

    python benchmarks/first_run.py [--before-repo DIR] [--data-dir ../shared/data/ag_news_csv] [--out benchmarks]
Prints a Markdown table and writes first_run.json and first_run.md under --out.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, arguments, offline_reference, pipeline, publish  # noqa: E402

STAGES = ["split", "tokenize", "train", "explore", "evaluate", "errors", "merge", "export"]


def first_run(repo: Path, work: Path, data_dir: str, run_name: str = "run") -> dict[str, float]:
    """Each stage's wall time and the process's, for one run of `repo`'s pipeline writing into `work`."""
    figures = pipeline(work, run_name, offline_reference(data_dir, work, "first_run"), repo)
    return {
        **{name: round(figures[name]["wall_s"], 1) for name in STAGES},
        "process": round(figures["process_wall_s"], 1),
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--before-repo", help="another checkout to measure the same way, for a before/after table")
    args = parser.parse_args()
    numba = next((REPO / "outputs" / "cache" / "numba").glob("numba*"), None)
    if numba is None:
        sys.exit("no numba cache under outputs/cache/numba: run `make setup` first")
    os.environ["NUMBA_CACHE_DIR"] = str(numba)
    repos = {"after": REPO, **({"before": Path(args.before_repo).resolve()} if args.before_repo else {})}
    work = {label: Path(tempfile.mkdtemp(prefix=f"first-{label}-")) for label in repos}
    results = {label: first_run(repo, work[label], args.data_dir) for label, repo in repos.items()}
    # The same command again in a new run directory: split, tokenize and the base model's evaluate/explore
    # come from the stage cache, as for a user's every run after the first on the same data and model.
    results["after, rerun"] = first_run(REPO, work["after"], args.data_dir, "rerun")
    for figures in results.values():
        figures["process_over_train"] = round(figures["process"] / figures["train"], 2)
    labels = [label for label in ("before", "after", "after, rerun") if label in results]
    rows = [*STAGES, "process", "process_over_train"]
    table = "\n".join(
        [
            f"| offline reference run, first run (s) | {' | '.join(labels)} |",
            "|---|" + "---|" * len(labels),
            *(f"| {row} | {' | '.join(str(results[label][row]) for label in labels)} |" for row in rows),
        ]
    )
    publish(args.out, "first_run", table, results)


if __name__ == "__main__":
    main()

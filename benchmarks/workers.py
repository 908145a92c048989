"""Sweep workers: one vs three processes on the same 9-trial study, and how long a killed worker's trial waits.

The study is LoRA on MiniLM over offline AG News (800 rows, 30 steps a trial, train stage only), with a random
sampler and no pruner, so every trial does the same work and the ratio measures throughput alone. The three
workers share the study through its journal file, as parallel shells would. Then two workers run a 4-trial study;
one is SIGKILLed while training, and the wait is the time from the kill until a live worker starts the retry.

    python benchmarks/workers.py [--data-dir DIR] [--out benchmarks] [--trials 9] [--workers 3]
Prints a Markdown table and writes workers.json and workers.md under --out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import REPO, arguments, checkout_env, publish  # noqa: E402

from pipeline.sweep import RETRY_OF_ATTR, WORKER_ATTR, open_storage  # noqa: E402

SEARCH = """# @package _global_
defaults:
  - override /hydra/sweeper: pipeline_optuna
hydra:
  sweeper:
    study_name: workers
    n_trials: {trials}
    sampler: {{type: random, seed: 7}}
    pruner: {{type: none}}
    params:
      method.r: {{type: categorical, choices: [4, 8, 16]}}
      train.learning_rate: {{type: float, low: 5.0e-4, high: 5.0e-3, log: true}}
"""


def command(search: Path, data_dir: str, out: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "pipeline", "--multirun", "+experiment=agnews_lora", "+hparams_search=workers"),
        *(f"hydra.searchpath=[file://{search}]", f"hydra.sweep.dir={out / 'sweep'}", f"paths.output_dir={out}"),
        *("model=minilm", "data=ag_news_csv", f"data.dir={data_dir}", "data.max_samples=800"),
        *("stages=[split,tokenize,train]", "train.max_steps=30", "train.eval_steps=15", "tracking.experiment=workers"),
    ]


def trials_of(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(str(out / "optuna" / "workers.journal"), out)
    return optuna.load_study(study_name="workers", storage=storage).get_trials()


def sweep(search: Path, data_dir: str, out: Path, workers: int, threads: int | None = None) -> dict:
    """Start `workers` processes on one study at once (each with `threads` OpenMP threads, else torch's default of
    one per core); wall time until the last exits, and what they ran."""
    env = checkout_env(REPO) | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            command(search, data_dir, out),
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"a sweep worker failed ({proc.returncode}):\n{stderr[-3000:]}")
    wall = time.perf_counter() - start
    trials = trials_of(out)
    seconds = sorted((t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete)
    return {
        "workers": workers,
        "threads_per_worker": threads or os.cpu_count(),
        "wall_s": round(wall, 1),
        "trials": len(trials),
        "finished": sum(t.state == TrialState.COMPLETE for t in trials),
        "per_worker": sorted(
            sum(t.user_attrs.get(WORKER_ATTR) == w for t in trials)
            for w in {t.user_attrs.get(WORKER_ATTR) for t in trials}
        ),
        "trial_median_s": round(seconds[len(seconds) // 2], 1),
    }


def requeue_wait(search: Path, data_dir: str, out: Path) -> dict:
    """Two workers on a 4-trial study; SIGKILL one 5 s into a trial; seconds until a live worker starts its retry."""
    procs = [
        subprocess.Popen(
            command(search, data_dir, out),
            cwd=REPO,
            env=checkout_env(REPO),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    victim, killed_at, killed = procs[0], None, None
    deadline = time.monotonic() + 600
    while killed is None and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            running = [
                t
                for t in trials_of(out)
                if t.state == TrialState.RUNNING and t.user_attrs.get(WORKER_ATTR, "").endswith(f":{victim.pid}")
            ]
        except KeyError:  # the study is not created yet
            continue
        if running and (time.time() - running[0].datetime_start.timestamp()) > 5:
            os.kill(victim.pid, signal.SIGKILL)
            killed_at, killed = time.time(), running[0].number
    if killed is None:
        sys.exit("the first worker never started a trial")
    for proc in procs:
        proc.wait()
    retry = next(t for t in trials_of(out) if t.user_attrs.get(RETRY_OF_ATTR) == killed)
    return {
        "killed_trial": killed,
        "retry_trial": retry.number,
        "retry_state": retry.state.name,
        "wait_s": round(retry.datetime_start.timestamp() - killed_at, 1),
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    search = work / "conf"
    (search / "hparams_search").mkdir(parents=True)
    (search / "hparams_search" / "workers.yaml").write_text(SEARCH.format(trials=args.trials))
    one = sweep(search, args.data_dir, work / "one", 1)
    many = sweep(search, args.data_dir, work / "many", args.workers)
    split = sweep(search, args.data_dir, work / "split", args.workers, max(1, (os.cpu_count() or 1) // args.workers))
    (search / "hparams_search" / "workers.yaml").write_text(SEARCH.format(trials=4))
    wait = requeue_wait(search, args.data_dir, work / "requeue")
    cores = os.cpu_count()
    rows = [(one, "1"), (many, f"{args.workers}, default threads"), (split, f"{args.workers}, threads split")]
    table = "\n".join(
        [
            f"| {args.trials}-trial study, {cores} CPU cores | threads each | wall s | vs 1 worker | trials run "
            "| per worker | median trial s |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {label} | {r['threads_per_worker']} | {r['wall_s']} | {one['wall_s'] / r['wall_s']:.2f}x "
                f"| {r['trials']} | {r['per_worker']} | {r['trial_median_s']} |"
                for r, label in rows
            ),
            "",
            f"A worker SIGKILLed in trial {wait['killed_trial']}: a live worker started its retry (trial "
            f"{wait['retry_trial']}, {wait['retry_state']}) **{wait['wait_s']} s** after the kill.",
        ]
    )
    results = {"one": one, "many": many, "split": split, "requeue": wait, "cpu_cores": cores}
    publish(args.out, "workers", table, results)


if __name__ == "__main__":
    main()

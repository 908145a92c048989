"""Measure what the stage cache saves, side by side in one run, on the shared AG News data with MiniLM.

1. Data stages (split, tokenize, base-model explore and evaluate) with a cold cache, then a warm one.
2. A 3-trial sweep (LoRA rank 4, 8, 16; short training) with the cache off, then on (starting empty).

    python benchmarks/cache_benefit.py [--data-dir ../shared/data/ag_news_csv] [--out benchmarks]
Prints a Markdown table and writes cache_benefit.json and cache_benefit.md under --out.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import arguments, offline_reference, publish, run_cli  # noqa: E402

DATA_STAGES = ["split", "tokenize", "explore", "evaluate"]


def stage_times(run_dir: Path) -> dict[str, float]:
    stages = json.loads((run_dir / "summary.json").read_text())["stages"]
    return {name: round(stages[name]["wall_s"], 2) for name in DATA_STAGES}


def main() -> None:
    args = arguments(__doc__).parse_args()
    work = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    common = offline_reference(args.data_dir, work, "cache_bench")
    data_only = [*common, f"stages=[{','.join(DATA_STAGES)}]"]
    results: dict[str, dict] = {}

    cold_dir, warm_dir = work / "cold", work / "warm"
    cold = run_cli([*data_only, "cache=refresh", f"hydra.run.dir={cold_dir}"])
    warm = run_cli([*data_only, "cache=on", f"hydra.run.dir={warm_dir}"])
    results["data_stages"] = {
        "cold_s": round(cold, 1),
        "warm_s": round(warm, 1),
        "speedup": round(cold / warm, 2),
        "cold_per_stage_s": stage_times(cold_dir),
        "warm_per_stage_s": stage_times(warm_dir),
    }

    sweep = [
        "--multirun",  # Hydra's flags come before the overrides
        *common,
        "method.r=4,8,16",
        "data.max_samples=2000",
        "train.max_steps=40",
        "stages=[split,tokenize,train,explore,evaluate]",
    ]
    shutil.rmtree(work / "cache", ignore_errors=True)
    off = run_cli([*sweep, "cache=off"])
    on = run_cli([*sweep, "cache=on"])
    results["sweep_3_trials"] = {
        "cache_off_s": round(off, 1),
        "cache_on_s": round(on, 1),
        "speedup": round(off / on, 2),
    }

    results["command_data"] = "python -m pipeline " + " ".join(data_only) + " cache=refresh|on"
    results["command_sweep"] = "python -m pipeline " + " ".join(sweep) + " cache=off|on"
    table = "\n".join(
        [
            "| measurement | without cache | with cache | ratio |",
            "|---|---|---|---|",
            f"| data stages, all 7,600 rows (cold vs warm) | {cold:.1f} s | {warm:.1f} s | {cold / warm:.2f}x |",
            f"| 3-trial sweep, 2,000 rows, 40 steps (cache off vs on) | {off:.1f} s | {on:.1f} s | {off / on:.2f}x |",
        ]
    )
    publish(args.out, "cache_benefit", table, results)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

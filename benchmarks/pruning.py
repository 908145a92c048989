"""What pruning saves: the same Optuna study budget with the median pruner and without, side by side in one run.

Both studies sample the LoRA-family/adapter/prompt space of conf/hparams_search/lora_optuna.yaml with the same
sampler seed, on a 2,000-row subset of the shared AG News data with MiniLM, one epoch per trial.

    python benchmarks/pruning.py [--trials 10] [--data-dir ../shared/data/ag_news_csv] [--out benchmarks]
Prints a Markdown table and writes pruning.json and pruning.md under --out.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import arguments, offline_reference, publish, run_cli  # noqa: E402

from pipeline.sweep import open_storage  # noqa: E402


def steps_consumed(trial: optuna.trial.FrozenTrial) -> int:
    """Optimizer steps a trial trained: all of them if it completed, up to its last report if pruned."""
    if trial.state == TrialState.COMPLETE and trial.user_attrs.get("train_steps") is not None:
        return int(trial.user_attrs["train_steps"])
    return max(trial.intermediate_values, default=0)


def study_figures(work: Path, study_name: str, wall_s: float) -> dict:
    storage = open_storage(str(work / "optuna" / f"{study_name}.journal"), work / "unused")
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    return {
        "wall_s": round(wall_s, 1),
        "train_steps": sum(steps_consumed(t) for t in trials),
        "best_val_f1": round(study.best_value, 4),
        "trials": {
            state.name.lower(): sum(t.state == state for t in trials) for state in TrialState if state.is_finished()
        },
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pruning-bench-"))
    results: dict[str, dict] = {}
    commands = {}
    for label, pruner in (("median pruner", "median"), ("no pruning", "none")):
        study = f"pruning_bench_{pruner}"
        command = [
            "--multirun",  # Hydra's flags come before the overrides
            *offline_reference(args.data_dir, work, "pruning_bench"),
            "+hparams_search=lora_optuna",
            "data.max_samples=2000",
            f"hydra.sweeper.study_name={study}",
            f"hydra.sweeper.n_trials={args.trials}",
            f"hydra.sweeper.pruner.type={pruner}",
        ]
        if pruner == "none":
            command += ["hydra.sweeper.pruner.n_startup_trials=null", "hydra.sweeper.pruner.n_warmup_steps=null"]
        results[label] = study_figures(work, study, run_cli(command))
        commands[label] = "python -m pipeline " + " ".join(command)
    with_p, without = results["median pruner"], results["no pruning"]
    table = "\n".join(
        [
            f"| {args.trials} trials, 2,000 rows, MiniLM | median pruner | no pruning | ratio |",
            "|---|---|---|---|",
            f"| training steps consumed | {with_p['train_steps']} | {without['train_steps']} | "
            f"{with_p['train_steps'] / max(without['train_steps'], 1):.2f} |",
            f"| wall time | {with_p['wall_s']:.0f} s | {without['wall_s']:.0f} s | "
            f"{with_p['wall_s'] / without['wall_s']:.2f} |",
            f"| best validation macro-F1 | {with_p['best_val_f1']:.4f} | {without['best_val_f1']:.4f} | |",
            f"| trials pruned | {with_p['trials']['pruned']} | {without['trials']['pruned']} | |",
        ]
    )
    publish(args.out, "pruning", table, {"results": results, "commands": commands})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The sweeper's typed config, registered as `hydra/sweeper=pipeline_optuna` (see conf/hparams_search/)."""

# No `from __future__ import annotations`: Hydra's plugin scan imports this module outside sys.modules, where
# dataclasses cannot resolve string annotations.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from pipeline.ranges import at_least, positive


@dataclass
class Objective:
    metric: str = "train/best_val_metric"  # a `<stage>/<metric>` key of the run summary
    direction: str = "maximize"  # or minimize


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.pipeline_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    study_name: str = "study"
    storage: str | None = None  # None: a journal file under paths.output_dir/optuna; or a path, or an RDB URL
    n_trials: int = positive(20)  # the study's total budget, shared by every worker and kept across resumes
    n_jobs: int = positive(1)  # trials per launcher batch (run in parallel by a parallel launcher such as joblib)
    max_failures: int = at_least(0, 3)  # failed trials tolerated before the sweep stops
    objectives: list[Objective] = field(default_factory=lambda: [Objective()])
    sampler: dict[str, Any] = field(default_factory=lambda: {"type": "tpe", "seed": 42})
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "median", "n_startup_trials": 2})
    # name -> {type: categorical|int|float, choices | low/high[/step][/log], when: {other_param: [values]},
    #          by: {other_param: {value: {low: .., high: ..}}}  (the spec's fields for that value of other_param)}
    params: dict[str, Any] = field(default_factory=dict)
    # A categorical param (e.g. `method`): each of its choices gets a study of its own, `<study_name>-<choice>`,
    # of n_trials trials, so every choice has the same budget rather than what the sampler gives it.
    budget_per: str | None = None
    # After the trials: score each study's best trial (by the objective) once on the test split, and write the
    # comparison table of those runs (under the sweep's comparison/, and as their MLflow parent run).
    test_best: bool = False


ConfigStore.instance().store(group="hydra/sweeper", name="pipeline_optuna", node=OptunaSweeperConf, provider="pipeline")

"""Hydra Sweeper on Optuna 5: conditional search spaces, pruning, resumable shared studies, MLflow parent runs.

Every worker running the same command asks the shared study for trials until its budget is spent, so
rerunning after a crash resumes, and several workers (processes or machines) split the work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.storages._heartbeat import get_heartbeat_thread  # public only through study.optimize
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.pipeline_optuna_sweeper.config import OptunaSweeperConf  # importing it registers the config
from pipeline.atomic import write_bytes
from pipeline.config import value
from pipeline.console import figure, quiet_warnings
from pipeline.errors import PipelineError
from pipeline.ranges import check_ranges
from pipeline.sweep import (
    OVER_BUDGET_ATTR,
    PARENT_ATTR,
    PRUNER_ATTR,
    RETRY_OF_ATTR,
    WORKER_ATTR,
    default_storage_path,
    is_dead_local_worker,
    make_pruner,
    open_storage,
    worker_id,
)

log = logging.getLogger(__name__)
STUDY_TAG = "optuna.study"
PARENT_WAIT_S = 60.0  # how long a worker waits for the study's creator to record the study's MLflow run


def resolved_spec(spec: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any] | None:
    """What a param samples given the values chosen before it: None when its `when` does not hold, else its fields
    with the `by` case of each chosen value over them (e.g. full fine-tuning's own learning-rate range)."""
    spec = dict(spec)
    when = spec.pop("when", None) or {}
    if any(chosen.get(key) not in list(allowed) for key, allowed in when.items()):
        return None
    for key, cases in (spec.pop("by", None) or {}).items():
        spec.update(cases.get(chosen.get(key), {}))
    return spec


def spec_problem(name: str, spec: dict[str, Any]) -> str | None:
    """Why Optuna cannot sample param `name`'s resolved spec, as the error line; None when it can."""
    where, kind = f"hydra.sweeper.params.{name}", spec.get("type")
    if kind not in ("categorical", "int", "float"):
        return f"{where}.type: {kind!r}; expected categorical, int or float"
    if kind == "categorical":
        return None if list(spec.get("choices") or []) else f"{where}.choices: empty; expected at least one value"
    if "low" not in spec or "high" not in spec:
        return f"{where}: a {kind} range needs low and high"
    return f"{where}: low {spec['low']} is above high {spec['high']}" if spec["low"] > spec["high"] else None


def check_space(params: dict[str, Any], limit: int = 20_000) -> None:
    """Resolve every param under every combination of the categorical choices before it, as `suggest` would, and
    fail on the first spec Optuna could not sample (naming the choices it depends on). A space of more than `limit`
    combinations is checked up to the limit; `suggest` still checks each trial's own."""
    names, visits = list(params), 0

    def walk(index: int, chosen: dict[str, Any]) -> None:
        nonlocal visits
        visits += 1
        if index == len(names) or visits > limit:
            return
        name = names[index]
        spec = resolved_spec(params[name], chosen)
        if spec is None:
            walk(index + 1, chosen)
            return
        problem = spec_problem(name, spec)
        if problem:
            depends = [*(params[name].get("when") or {}), *(params[name].get("by") or {})]
            given = ", ".join(f"{key}={chosen[key]}" for key in depends if key in chosen)
            raise PipelineError(problem + (f" (with {given})" if given else ""))
        if spec["type"] != "categorical":
            walk(index + 1, chosen)
            return
        for choice in spec["choices"]:
            walk(index + 1, {**chosen, name: choice})

    walk(0, {})


def suggest(trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]:
    """Sample the search space in declaration order; a param with `when` is sampled only if its condition holds."""
    chosen: dict[str, Any] = {}
    for name, raw in params.items():
        spec = resolved_spec(raw, chosen)
        if spec is None:
            continue
        problem = spec_problem(name, spec)
        if problem:
            raise PipelineError(problem)
        kind = spec.pop("type")
        if kind == "categorical":
            chosen[name] = trial.suggest_categorical(name, list(spec["choices"]))
        elif kind == "int":
            chosen[name] = trial.suggest_int(name, **spec)
        else:
            chosen[name] = trial.suggest_float(name, **spec)
    return chosen


def override_value(value: Any) -> str:
    """A sampled value as Hydra override syntax."""
    if value is None:
        return "null"
    return str(value)


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """Sampled values as Hydra overrides."""
    return [f"{k}={override_value(v)}" for k, v in params.items()]


def make_sampler(spec: dict[str, Any]) -> optuna.samplers.BaseSampler:
    spec = dict(spec)
    kind = spec.pop("type", "tpe")
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    if kind not in samplers:
        raise PipelineError(f"hydra.sweeper.sampler.type: unknown {kind!r}; expected one of {sorted(samplers)}")
    return samplers[kind](**spec)


def counted(trials: list[FrozenTrial]) -> list[int]:
    """Numbers, in order, of the trials that count against n_trials: those started (running or finished), less
    the stale ones whose parameters were queued again and those asked over budget. A queued retry counts once it
    starts; counting it while WAITING would spend the budget of a killed last trial on a retry that never runs."""
    retried = {t.user_attrs[RETRY_OF_ATTR] for t in trials if RETRY_OF_ATTR in t.user_attrs}
    return sorted(
        t.number
        for t in trials
        if t.state != TrialState.WAITING and t.number not in retried and OVER_BUDGET_ATTR not in t.user_attrs
    )


def consumed(study: optuna.Study) -> int:
    """How much of n_trials the study has used (`counted`)."""
    return len(counted(study.get_trials(deepcopy=False)))


class OptunaSweeper(Sweeper):
    """Runs `n_trials` trials of one Optuna study through Hydra's launcher (basic, joblib, ...)."""

    def __init__(self, **conf: Any) -> None:
        self.conf = OmegaConf.create(conf)
        self.params = OmegaConf.to_container(self.conf.params, resolve=True)
        self.directions = [str(o.direction) for o in self.conf.objectives]

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        quiet_warnings()
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        """Hydra's entry: the sweep, where a user mistake (a sweep override, too many failed trials, a bad
        budget_per) ends in one `error:` line and exit 2, as a single run's does, not in Hydra's traceback."""
        try:
            return self.run_sweep(arguments)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    def check_settings(self) -> None:
        """Settings every trial would trip on fail before the first: n_jobs=0 asked for no trial, forever; an
        objective of a stage the trials do not run, or an empty choice list, failed trial after trial."""
        check_ranges(OmegaConf.merge(OmegaConf.structured(OptunaSweeperConf), self.conf), "hydra.sweeper.")
        stages = [value(stage) for stage in self.config.get("stages", [])]
        for objective in self.conf.objectives:
            if objective.direction not in ("maximize", "minimize"):
                raise PipelineError(
                    f"hydra.sweeper.objectives: direction {objective.direction!r}; expected maximize or minimize"
                )
            stage = str(objective.metric).partition("/")[0]
            if stage not in stages:
                raise PipelineError(
                    f"hydra.sweeper.objectives: metric {objective.metric!r} is not '<stage>/<name>' of a stage the "
                    f"trials run ({', '.join(stages)}), e.g. train/best_val_metric"
                )
        check_space(self.params)

    def run_sweep(self, arguments: list[str]) -> Any:
        self.check_settings()
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        for override in parser.parse_overrides(arguments):
            if override.is_sweep_override():
                raise PipelineError(
                    f"{override.input_line}: the Optuna sweeper samples hydra.sweeper.params; pass fixed values only"
                )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        studies = [self.run_study(name, params, arguments, sweep_dir) for name, params in self.studies()]
        if self.conf.test_best:
            self.test_best(studies, arguments, sweep_dir)
        return studies[0] if len(studies) == 1 else studies

    def studies(self) -> list[tuple[str, dict[str, Any]]]:
        """(study name, space) of each study: one, or one per choice of `budget_per` with that choice fixed."""
        key = self.conf.budget_per
        if key is None:
            return [(self.conf.study_name, self.params)]
        spec = self.params.get(key)
        if spec is None or spec.get("type") != "categorical" or spec.get("when"):
            raise PipelineError(
                f"hydra.sweeper.budget_per: {key!r} must name an unconditional categorical param of "
                f"hydra.sweeper.params (have: {sorted(self.params)})"
            )
        return [
            (f"{self.conf.study_name}-{choice}", {**self.params, key: {**spec, "choices": [choice]}})
            for choice in spec["choices"]
        ]

    def run_study(self, name: str, params: dict[str, Any], arguments: list[str], sweep_dir: Path) -> optuna.Study:
        """Ask the shared study `name` for trials until n_trials count against it, then summarise it."""
        storage_path = self.conf.storage or str(
            default_storage_path(Path(self.config.paths.output_dir).resolve(), name)
        )
        storage = open_storage(storage_path, Path(storage_path), on_stale=self.retry)
        sampler, pruner = make_sampler(self.conf.sampler), make_pruner(self.conf.pruner)
        try:  # the storage lets one worker create a study: that one makes its MLflow run (parent_run)
            study, created = (
                optuna.create_study(
                    study_name=name, storage=storage, sampler=sampler, pruner=pruner, directions=self.directions
                ),
                True,
            )
        except optuna.exceptions.DuplicatedStudyError:
            study, created = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), False
        study.set_user_attr(PRUNER_ATTR, OmegaConf.to_container(self.conf.pruner))
        parent = self.parent_run(study, created)
        fixed = [*arguments, f"trial.study={name}", f"trial.storage={storage_path}", f"trial.parent_run_id={parent}"]
        try:
            self.run_trials(study, name, params, fixed, sweep_dir)
        except PipelineError as exc:  # the sweep stops here (too many failed trials)
            from mlflow.exceptions import MlflowException

            from pipeline.tracking import open_experiment

            try:  # best effort: a store failing here must not hide the sweep's own error
                self.mark_study_run(open_experiment(self.config)[0], parent, "FAILED", str(exc))
            except (MlflowException, PipelineError, OSError) as unmarked:
                log.warning("study run %s not marked FAILED: %s", parent, unmarked)
            raise
        self.summarise(study, parent, sweep_dir)
        return study

    def run_trials(
        self, study: optuna.Study, name: str, params: dict[str, Any], fixed: list[str], sweep_dir: Path
    ) -> None:
        """Launch batches of n_jobs trials until n_trials count against the study."""
        while True:
            self.requeue_stale(study)  # a trial whose worker died since the last batch is queued for this worker
            remaining = self.conf.n_trials - consumed(study)
            if remaining <= 0:
                break
            failed = self.failed_trials(study)
            if len(failed) > self.conf.max_failures:
                last = failed[-1].user_attrs.get("error", "no reason recorded")
                raise PipelineError(
                    f"hydra.sweeper.max_failures: {len(failed)} trials of study {name} failed "
                    f"(> {self.conf.max_failures}; the last: {last}); see their run directories under {sweep_dir}"
                )
            asked = [study.ask() for _ in range(min(self.conf.n_jobs, remaining))]
            for trial in asked:  # at once: a worker that dies from here on is found by its pid
                trial.set_user_attr(WORKER_ATTR, worker_id())
            trials = self.within_budget(study, asked)
            if not trials:
                continue  # other workers took the last trials
            batch = []
            for trial in trials:
                batch.append([*fixed, *trial_overrides(suggest(trial, params)), f"trial.number={trial.number}"])
            with contextlib.ExitStack() as beating:
                # Optuna records heartbeats only inside study.optimize, which a launcher-driven sweep never calls;
                # without them an RDB storage cannot tell another machine that this worker died.
                for trial in trials:
                    beating.enter_context(get_heartbeat_thread(trial._trial_id, study._storage))
                returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, ret in zip(trials, returns, strict=True):
                self.tell(study, trial, ret)
                log.info("%s", self.trial_line(study, trial.number))

    def test_best(self, studies: list[optuna.Study], arguments: list[str], sweep_dir: Path) -> None:
        """Score each study's best trial once on the test split (in its own run directory, beside the model it
        trained), then compare those runs. Test rows are read here only, after every trial has been chosen."""
        if len(self.directions) > 1:
            raise PipelineError("hydra.sweeper.test_best: needs one objective (a Pareto front has no single best)")
        from pipeline.compare import compare

        best = []
        for study in studies:
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not complete:
                log.error("study %s: no trial completed, so it has no best trial to test", study.study_name)
                continue
            best.append(study.best_trial)
        if not best:
            raise PipelineError(f"hydra.sweeper.test_best: no study completed a trial; see {sweep_dir}")
        batch = [
            [*arguments, *trial_overrides(t.params), f"trial.number={t.number}", "stages=[evaluate]"] for t in best
        ]
        run_dirs = []
        for trial, ret in zip(best, self.launcher.launch(batch, initial_job_idx=0), strict=True):
            run_dirs.append(Path(ret.hydra_cfg.hydra.runtime.output_dir))  # the trial's own directory
            if ret.status == JobStatus.FAILED or "error" in (ret.return_value or {}):
                log.error("testing trial %d (%s) failed; see %s", trial.number, trial.params, run_dirs[-1])
        out = compare(sweep_dir, self.config, run_dirs=run_dirs)
        log.info("best trial of each study scored on test: %s", out / "comparison.md")

    def failed_trials(self, study: optuna.Study) -> list[FrozenTrial]:
        """Trials that failed by themselves, in order: not a dead worker's (re-queued), not one asked over budget."""
        trials = study.get_trials(deepcopy=False)
        budget = set(counted(trials))
        return [t for t in trials if t.state == TrialState.FAIL and t.number in budget]

    def within_budget(self, study: optuna.Study, asked: list[optuna.Trial]) -> list[optuna.Trial]:
        """The asked trials that are among the study's first n_trials counted; the others were asked by workers
        racing for the last slots (each checks the budget before it asks), so they are failed unrun, marked
        over_budget, and not counted. Trial numbers are unique and ordered, so every worker agrees which. A queued
        retry holds its slot while it waits: it has a lower number than trials asked after it, and another worker
        may start it after this check."""
        trials = study.get_trials(deepcopy=False)
        waiting = [t.number for t in trials if t.state == TrialState.WAITING and RETRY_OF_ATTR in t.user_attrs]
        allowed = set(sorted([*counted(trials), *waiting])[: self.conf.n_trials])
        kept = []
        for trial in asked:
            if trial.number in allowed:
                kept.append(trial)
                continue
            trial.set_user_attr(OVER_BUDGET_ATTR, True)
            study.tell(trial, state=TrialState.FAIL)
            log.info(
                "trial %d not run: other workers had started the study's n_trials=%d", trial.number, self.conf.n_trials
            )
        return kept

    def requeue_stale(self, study: optuna.Study) -> None:
        """Fail the trials a dead worker left RUNNING and queue their parameters again.

        Local workers are checked by pid; on an RDB storage, workers elsewhere by Optuna's heartbeat (which calls
        `retry`). Several live workers may find the same dead trial at once: only the one whose FAIL the storage
        accepts queues it again, so a retry is never queued twice.
        """
        optuna.storages.fail_stale_trials(study)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if not is_dead_local_worker(trial.user_attrs.get(WORKER_ATTR)):
                continue
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # another worker failed it first (before, or during, this tell), and queues it
            self.retry(study, trial)

    def retry(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Queue the parameters of `trial`, failed because its worker died (whether the retry fits the budget is
        decided when a worker starts it, by `within_budget`)."""
        log.warning("trial %d was left RUNNING by a dead worker: failed and queued again", trial.number)
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF_ATTR: trial.number}, skip_if_exists=False)

    def tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> None:
        """Record a finished job in the study: COMPLETE with its objective values, PRUNED, or FAIL."""
        if ret.status == JobStatus.FAILED:
            error = ret._return_value
            if isinstance(error, optuna.TrialPruned):
                study.tell(trial, state=TrialState.PRUNED)
                return
            log.error("trial %d failed: %s: %s", trial.number, type(error).__name__, error)
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:1000])
            study.tell(trial, state=TrialState.FAIL)
            return
        returned = ret.return_value or {}
        if "error" in returned:
            log.error("trial %d failed: %s", trial.number, returned["error"])
            trial.set_user_attr("error", str(returned["error"])[:1000])
            study.tell(trial, state=TrialState.FAIL)
            return
        metrics = returned.get("metrics", {})
        missing = [o.metric for o in self.conf.objectives if o.metric not in metrics]
        if missing:  # a typo, or a metric this trial's method does not report (tfidf_lr counts no tokens)
            stage = missing[0].partition("/")[0]
            known = sorted(m for m in metrics if m.startswith(f"{stage}/"))
            trial.set_user_attr("error", f"objective metrics {missing} not in the run summary; {stage} has {known}")
            study.tell(trial, state=TrialState.FAIL)
            return
        trial.set_user_attr("train_steps", metrics.get("train/steps"))
        study.tell(trial, [float(metrics[o.metric]) for o in self.conf.objectives])

    def trial_line(self, study: optuna.Study, number: int) -> str:
        """A finished trial on one line: `trial 4 [5/9] COMPLETE <metric> 0.8812 (best 0.8812, trial 2): params`."""
        trials = study.get_trials(deepcopy=False)
        budget = set(counted(trials))
        done = sum(t.state.is_finished() and t.number in budget for t in trials)
        trial = next(t for t in trials if t.number == number)
        if trial.state == TrialState.COMPLETE:
            outcome = ", ".join(
                f"{o.metric} {figure(v)}" for o, v in zip(self.conf.objectives, trial.values, strict=True)
            )
        elif trial.state == TrialState.PRUNED and trial.intermediate_values:
            step = max(trial.intermediate_values)
            outcome = f"at step {step} ({figure(trial.intermediate_values[step])})"
        else:
            outcome = str(trial.user_attrs.get("error", ""))[:120]
        if len(self.directions) > 1:
            best = f"Pareto front: {len(study.best_trials)} trials"
        elif any(t.state == TrialState.COMPLETE for t in trials):
            best = f"best {figure(study.best_value)}, trial {study.best_trial.number}"
        else:
            best = "none complete yet"
        params = " ".join(f"{k}={figure(v)}" for k, v in trial.params.items())
        return f"trial {number} [{done}/{self.conf.n_trials}] {trial.state.name} {outcome} ({best}): {params}"

    @staticmethod
    def mark_study_run(client: Any, parent: str, status: str, error: str | None = None) -> None:
        """Set the study's MLflow run to `status`, with the `error` that stopped it, or without the one a stopped
        worker left (a resumed or shared study reopens and finishes the run it marked FAILED)."""
        from mlflow.exceptions import MlflowException

        if error is not None:
            client.set_tag(parent, "error", error)
        else:
            with contextlib.suppress(MlflowException):  # no such tag: none was set, or another worker removed it
                client.delete_tag(parent, "error")
        if status == "RUNNING":
            client.update_run(parent, status="RUNNING")
        else:
            client.set_terminated(parent, status)

    def parent_run(self, study: optuna.Study, created: bool) -> str:
        """The study's MLflow run: made once, by the worker that created the study, and kept in the study's
        PARENT_ATTR, so workers starting together do not each make one (searching MLflow first raced: three
        workers made three parents and split the trials between them)."""
        from pipeline.tracking import open_experiment, redact  # MLflow loads when a sweep starts, not on --help

        client, experiment_id = open_experiment(self.config)
        parent = study.user_attrs.get(PARENT_ATTR)
        deadline = time.monotonic() + PARENT_WAIT_S
        while parent is None and not created and time.monotonic() < deadline:  # its creator is making it
            time.sleep(0.5)
            parent = study.user_attrs.get(PARENT_ATTR)
        if parent is not None:
            self.mark_study_run(client, parent, "RUNNING")
            return parent
        # the creator died before making it, or the study predates PARENT_ATTR (its run is found by tag)
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study.study_name}' and tags.kind = 'study'"
        )
        if found:
            parent = found[0].info.run_id
            self.mark_study_run(client, parent, "RUNNING")
        else:
            tags = {STUDY_TAG: study.study_name, "kind": "study"}
            parent = client.create_run(experiment_id, run_name=f"study-{study.study_name}", tags=tags).info.run_id
            client.log_text(parent, redact(OmegaConf.to_yaml(self.conf)), "sweeper.yaml")
        study.set_user_attr(PARENT_ATTR, parent)
        return parent

    def summarise(self, study: optuna.Study, parent: str, sweep_dir: Path) -> None:
        """Best parameters and values, the trials table and Optuna's plots, on the parent run and on disk."""
        from mlflow.entities import Metric, RunTag

        from pipeline.tracking import again_if_raced, open_experiment

        client, _ = open_experiment(self.config)
        frame = study.trials_dataframe()
        # Trials asked over budget were never run: counted apart from the trials that failed.
        states = dict(
            Counter("OVER_BUDGET" if OVER_BUDGET_ATTR in t.user_attrs else t.state.name for t in study.trials)
        )
        # Optuna's best trials: the Pareto front, or the best trial(s) of one objective; none before one completes.
        best = [{"number": t.number, "values": t.values, "params": t.params} for t in study.best_trials]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            frame.to_csv(out / "trials.csv", index=False)
            (out / "best.json").write_text(json.dumps(best, indent=2, default=str))
            plot_study(study, self.directions, out)
            client.log_artifacts(parent, str(out), "study")
            # a copy beside the trial directories; one folder per study when each method has its own
            copies = sweep_dir / "studies" / study.study_name if self.conf.budget_per else sweep_dir
            for path in out.iterdir():
                write_bytes(copies / path.name, path.read_bytes())
        now = int(time.time() * 1000)
        metrics = [Metric(f"trials_{state.lower()}", float(count), now, 0) for state, count in states.items()]
        tags = []
        if best and len(self.directions) == 1:
            metrics.append(Metric("best_value", float(best[0]["values"][0]), now, 0))
            tags = [RunTag(f"best.{key}", str(value)) for key, value in best[0]["params"].items()]
        # Workers that end together both write these (the last to finish has the final word either way).
        again_if_raced(lambda: client.log_batch(parent, metrics=metrics, tags=tags))
        self.mark_study_run(client, parent, "FINISHED")
        log.info("study %s: %s; best %s", study.study_name, states, best[:1])


def plot_study(study: optuna.Study, directions: list[str], out: Path) -> None:
    """Optimisation history, parameter importances and parallel coordinates, one PNG each per objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {
        "history": ovm.plot_optimization_history,
        "importances": ovm.plot_param_importances,
        "parallel_coordinates": ovm.plot_parallel_coordinate,
    }
    # Optuna's plots switch the process's style to ggplot (plt.style.use); rc_context puts it back afterwards, so
    # the plots a sweep makes next (the comparison's) look as they do from any other command.
    with matplotlib.rc_context():
        for index in range(len(directions)):
            suffix = "" if len(directions) == 1 else f"_objective{index}"
            for name, plot in plots.items():
                try:
                    kwargs = {} if len(directions) == 1 else {"target": lambda t, i=index: t.values[i]}
                    axes = plot(study, **kwargs)
                except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ completed trials
                    log.info("no %s plot: %s", name, exc)
                    continue
                figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
                figure.savefig(out / f"{name}{suffix}.png", dpi=100, bbox_inches="tight")
                plt.close(figure)

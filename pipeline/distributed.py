"""Multi-process (DDP) training: the train stage launches `torchrun --standalone --nproc_per_node=N` on this
module, and each worker trains with the Trainer, which sets DDP up from torchrun's environment (NCCL on GPUs,
gloo on CPU).

The parent process keeps everything else: the other stages run once, in it; it holds the MLflow run and the run
directory. Rank 0 streams the step logs onto the parent's MLflow run and writes the train stage's outputs (the
Trainer's checkpoints, the model), then hands its TrainResult (or its pruning or error) back in a file; the other
ranks log and write nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.atomic import read_json, write_json, write_text
from pipeline.errors import PipelineError
from pipeline.process import die_with_parent, skip_exit_collection

if TYPE_CHECKING:
    from pipeline.context import RunContext
    from pipeline.stages.train import TrainResult

log = logging.getLogger("pipeline")

STOP_WAIT_S = 45  # after an interrupt, how long torchrun gets (its own wait for the workers is 30 s) before SIGKILL
T = TypeVar("T")


def rank() -> int:
    """This process's global rank under torchrun (0 outside it)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """The number of training processes under torchrun (1 outside it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def shared(decide: Callable[[], T]) -> T:
    """`decide()` on rank 0, the same value on every rank (a pruning verdict must stop all ranks, or the others
    wait forever in their next collective)."""
    if world_size() == 1:
        return decide()
    import torch.distributed as dist

    box = [decide() if rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def launch(ctx: RunContext) -> TrainResult:
    """Train in `train.nproc_per_node` processes and return rank 0's result (the parent side of the stage)."""
    import optuna
    from omegaconf import OmegaConf

    from pipeline.stages.train import result_from_record

    folder = ctx.layout.train / "distributed"
    outcome = folder / "outcome.json"
    outcome.unlink(missing_ok=True)  # an earlier attempt's
    write_text(folder / "config.yaml", OmegaConf.to_yaml(ctx.cfg, resolve=True))
    log_files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    write_json(
        folder / "launch.json",
        {
            "run_dir": str(ctx.layout.root),
            "run_id": ctx.tracker.run_id,
            "experiment_id": ctx.tracker.experiment_id,
            "tracking_uri": ctx.tracker.tracking_uri,
            "log_files": log_files,
        },
    )
    n = ctx.cfg.train.nproc_per_node
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"),
        *("-m", "pipeline.distributed", str(folder)),
    ]
    log.info("train: DDP in %d processes (torchrun --nproc_per_node=%d)", n, n)
    # The cores split between the processes (torchrun would set 1 and print a banner saying so); the user's wins.
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n)), **os.environ}
    # util-linux's setpriv gives torchrun a SIGTERM when this process dies, even by SIGKILL (Linux's
    # PR_SET_PDEATHSIG, set before exec: a preexec_fn could deadlock beside the sweeper's heartbeat threads).
    setpriv = shutil.which("setpriv")
    guard = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
    code = _wait(subprocess.Popen([*guard, *command], env=env, start_new_session=True))
    if not outcome.exists():
        raise PipelineError(f"train.nproc_per_node: the {n} training processes exited with code {code} (see above)")
    done = read_json(outcome)
    if "pruned" in done:
        raise optuna.TrialPruned(done["pruned"])
    if "error" in done:
        raise PipelineError(done["error"])
    return result_from_record(done["result"])


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """torchrun's exit code; on Ctrl-C or SIGTERM in the parent, stop the workers (bounded) and re-raise.

    torchrun runs in its own session, so a terminal's Ctrl-C reaches the parent alone, which stops it here:
    SIGTERM, which torchrun passes on to its workers (it kills them after its own 30 s), and SIGKILL after
    STOP_WAIT_S; each worker also dies with torchrun (`die_with_parent`).
    """
    try:
        return proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):  # torchrun may have ended as the interrupt came
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        raise


def worker(folder: Path) -> int:
    """One torchrun worker: rebuild the run's context from what `launch` wrote, train, hand back the result."""
    import optuna
    import torch
    from omegaconf import OmegaConf

    from pipeline.cache import StageCache
    from pipeline.config import CacheMode, value
    from pipeline.console import quiet_libraries
    from pipeline.context import RunContext, RunLayout
    from pipeline.finetune import fine_tune
    from pipeline.methods import get_method
    from pipeline.tasks import get_task
    from pipeline.tracking import OffRankTracker, Tracker

    # SIGTERMed when torchrun dies, even by SIGKILL: torchrun starts each worker in a session of its own, where no
    # signal to torchrun's group reaches it.
    die_with_parent(signal.SIGTERM)
    spec = read_json(folder / "launch.json")
    cfg = OmegaConf.load(folder / "config.yaml")
    if torch.cuda.is_available():  # before any model loads: a quantized one stays on the GPU it loads to
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    _worker_logging(spec["log_files"])
    quiet_libraries()
    tracker_type = Tracker if rank() == 0 else OffRankTracker
    method = get_method(cfg.method.name)
    ctx = RunContext(
        cfg=cfg,
        layout=RunLayout(Path(spec["run_dir"])),
        task=get_task(cfg.task.name),
        method=method,
        tracker=tracker_type(spec["run_id"], spec["experiment_id"], spec["tracking_uri"]),
        cache=StageCache(Path(cfg.paths.cache_dir).expanduser(), CacheMode(value(cfg.cache))),
    )
    code = 0
    try:
        done: dict[str, Any] = {"result": dataclasses.asdict(fine_tune(ctx, method))}
    except optuna.TrialPruned as exc:  # on every rank at once (`shared`)
        done = {"pruned": str(exc)}
    except PipelineError as exc:
        done, code = {"error": str(exc)}, 1  # non-zero: torchrun stops ranks that may wait on this one
    if rank() == 0:
        write_json(folder / "outcome.json", done)
    if torch.distributed.is_initialized():  # left to interpreter exit, gloo sometimes aborts the process (SIGABRT)
        torch.distributed.destroy_process_group()
    return code


def _worker_logging(log_files: list[str]) -> None:
    """Rank 0 logs as the parent does (console and the run's log file); the others only their warnings."""
    formatter = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if rank() == 0:
        handlers += [logging.FileHandler(path) for path in log_files]
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO if rank() == 0 else logging.WARNING, handlers=handlers, force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A DDP training worker (started by the train stage via torchrun).")
    parser.add_argument("folder", type=Path, help="train/distributed/ of the run: launch.json and config.yaml")
    return worker(parser.parse_args(argv).folder)


if __name__ == "__main__":
    skip_exit_collection()
    sys.exit(main())

"""Pre-flight checks beside start-up: the stages' checks (a known optimizer, a method that applies to the model) need
transformers and peft imported, about 2 s on 2 cores, so a forked process runs them while this one opens the MLflow
store; the run takes their verdict before its first stage, so a bad setting still fails before any work.

The standard library's process pool is not used: it pickles the callables it runs, and a check closes over the
run's config, task and method; a forked `multiprocessing.Process` inherits them instead.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from multiprocessing.connection import Connection

from pipeline.errors import PipelineError
from pipeline.process import die_with_parent

Check = Callable[[], None]
# The checks take ~2-3 s alone; this bounds the wait where a loaded machine (a sweep's workers) slows them down.
VERDICT_TIMEOUT_S = 300.0


def forking_pays() -> bool:
    """Whether to check in a forked process: on Linux, while the libraries the checks import are still unloaded
    (a sweep's later trials have them already, so checking here costs ~0.1 s), no other thread runs (a fork copies
    locks other threads may hold), and CUDA is not initialised (a forked child cannot use it: an earlier job of a
    multirun in this process may have, and QLoRA's check asks the GPU for bf16)."""
    torch = sys.modules.get("torch")
    return (
        sys.platform == "linux"
        and "peft" not in sys.modules
        and threading.active_count() == 1
        and not (torch is not None and torch.cuda.is_initialized())
    )


def _run_all(checks: list[Check]) -> None:
    for check in checks:
        check()


def _run_checks(checks: list[Check], verdict: Connection, parent: int) -> None:
    """In the forked process: run every check and send None, the first user error, or a bug's traceback."""
    # The parent answers Ctrl-C, SIGTERM and a cluster's requeue signals (submitit's) and stops this process; with
    # the parent's handlers inherited, this process would act on them too. It also goes when the parent dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT):
        signal.signal(sig, signal.SIG_DFL)
    die_with_parent(signal.SIGKILL, parent)  # by pid: in a container the parent may itself be pid 1
    outcome: BaseException | None = None
    try:
        _run_all(checks)
    except PipelineError as exc:
        outcome = exc
        try:
            pickle.loads(pickle.dumps(exc))  # one the parent could not rebuild travels as its traceback
        except Exception:  # noqa: BLE001
            outcome = RuntimeError(f"pre-flight check failed:\n{''.join(traceback.format_exception(exc))}")
    except BaseException:  # noqa: BLE001 - a bug: its traceback goes to the parent, which shows it
        outcome = RuntimeError(f"pre-flight check failed:\n{traceback.format_exc()}")
    verdict.send(outcome)
    verdict.close()


@contextmanager
def preflight(checks: list[Check], fork: bool | None = None) -> Iterator[Callable[[], None]]:
    """Start `checks`; yield a function that waits for their verdict and raises the first check's error.

    fork: True runs them in a forked process, False here when the verdict is asked for; None decides by
    `forking_pays`. Leaving the block stops a forked process whose verdict nobody asked for (an earlier error).
    """
    if not checks or not (forking_pays() if fork is None else fork):
        yield partial(_run_all, checks)
        return
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_run_checks, args=(checks, send, os.getpid()), name="pipeline-preflight", daemon=True
    )
    process.start()
    send.close()

    def verdict() -> None:
        if not receive.poll(VERDICT_TIMEOUT_S):
            raise PipelineError(
                f"stages: the pre-flight checks gave no verdict in {VERDICT_TIMEOUT_S:g} s "
                "(the machine may be overloaded); run again"
            )
        try:
            outcome = receive.recv()
        except EOFError:  # the process died without a word (killed, or out of memory)
            process.join()
            raise RuntimeError(f"pre-flight checks: their process died (exit code {process.exitcode})") from None
        if outcome is not None:
            raise outcome

    try:
        yield verdict
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receive.close()

"""What the command-line entry points do for their own process (not on import: a library user's process is theirs)."""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def skip_exit_collection() -> None:
    """Let the process end without CPython's exit-time garbage collections.

    At exit CPython clears every module and runs a full collection after each batch, over every object the collector
    tracks: ~750k after a pipeline run (torch, transformers, MLflow), about 2 s on 2 cores. Frozen at exit, they are
    skipped; refcounting still frees what it can. Nothing of ours needs a reference cycle's finalizer by then: every
    output is written and closed, the MLflow run has ended, and logging flushes its handlers in its own exit hook.
    """
    atexit.register(gc.freeze)


def die_with_parent(sig: signal.Signals, parent: int | None = None) -> None:
    """Have Linux send `sig` to this process when its parent dies, even by SIGKILL; exit now if it already has
    (its parent is no longer `parent`, or, where the caller cannot know the parent's pid, is init).

    PR_SET_PDEATHSIG through ctypes: the standard library has no call for it.
    """
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    orphaned = os.getppid() == 1 if parent is None else os.getppid() != parent
    if orphaned:
        sys.exit(1)

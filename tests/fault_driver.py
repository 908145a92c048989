"""`python -m pipeline` with a signal sent to itself at one chosen moment, for the fault tests.

    python tests/fault_driver.py MOMENT SIGNAL [overrides...]

MOMENT is `step` (as step 51 starts, after checkpoints 20 and 40), `checkpoint` (the second checkpoint's
weights written, its optimizer, RNG and trainer state not yet), `rename` (the train stage's finished model about
to be renamed into place) or `trial-2` (step 5 of a sweep's third trial, before any pruning); SIGNAL is SIGTERM
or SIGKILL. The moment is reached by wrapping the library call made there, so the pipeline code runs unchanged.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path
from typing import Any

from transformers import Trainer


def main() -> None:
    moment, sig = sys.argv[1], getattr(signal, sys.argv[2])
    sys.argv = ["pipeline", *sys.argv[3:]]

    def fire() -> None:
        os.kill(os.getpid(), sig)  # SIGKILL ends here; SIGTERM's handler raises at the next bytecode

    if moment in {"step", "trial-2"}:
        step = Trainer.training_step
        trainings = [0]  # a sweep runs one Trainer per trial, in this one process

        def training_step(self: Trainer, *args: Any, **kwargs: Any) -> Any:
            if self.state.global_step == 0 and not getattr(self, "_counted", False):
                self._counted = True
                trainings[0] += 1
            at = 50 if moment == "step" else 5 if trainings[0] == 3 else None
            if self.state.global_step == at:
                fire()
            return step(self, *args, **kwargs)

        Trainer.training_step = training_step
    elif moment == "checkpoint":
        save = Trainer._save_optimizer_and_scheduler
        saves = [0]

        def save_optimizer_and_scheduler(self: Trainer, output_dir: str) -> None:
            saves[0] += 1
            if saves[0] == 2:
                fire()
            save(self, output_dir)

        Trainer._save_optimizer_and_scheduler = save_optimizer_and_scheduler
    elif moment == "rename":
        rename = Path.rename

        def renaming(self: Path, target: Any) -> Path:
            if self.name.startswith(".model.tmp-"):
                fire()
            return rename(self, target)

        Path.rename = renaming
    else:
        raise SystemExit(f"unknown moment {moment!r}")
    runpy.run_module("pipeline", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

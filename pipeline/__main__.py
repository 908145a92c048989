"""`python -m pipeline [+experiment=NAME] [overrides...]`: compose the config, run the stages, exit code."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from pipeline.atomic import write_text
from pipeline.config import register_configs
from pipeline.errors import PipelineError
from pipeline.overrides import compose_error
from pipeline.process import skip_exit_collection

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
log = logging.getLogger("pipeline")

register_configs()
_task_started = False  # set once Hydra has composed the config and handed it to `main`


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    """Returns the run's metrics (`<stage>/<metric>`) to a sweeper, or `{"error": ...}` for a bad combination."""
    global _task_started
    _task_started = True
    if isinstance(sys.stderr, _HeldStderr):
        sys.stderr.release()
    from pipeline.runner import run_pipeline  # torch, transformers and peft load only once a run starts

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        results = run_pipeline(cfg, run_dir, list(hydra_cfg.overrides.task))
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (turned into one by the tracker)
        print(
            f"interrupted: MLflow run marked KILLED; continue with resume=true hydra.run.dir={run_dir}", file=sys.stderr
        )
        sys.exit(130)
    except PipelineError as exc:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            log.error("%s", exc)
            # One bad combination (e.g. prefix tuning on DistilBERT) must not stop the other runs of a sweep:
            # the reason goes to the run directory, where the comparison table picks it up.
            write_text(run_dir / "error.txt", f"{exc}\n")
            return {"error": str(exc)}
        _to_log_files(f"{exc}")  # the console shows it once, as the `error:` line
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    return {"metrics": {f"{stage}/{k}": v for stage, result in results.items() for k, v in result.metrics().items()}}


def _to_log_files(message: str) -> None:
    """Record an error in the run's log file without the console handler printing it a second time."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class _HeldStderr(io.TextIOBase):
    """stderr held back until the run starts: Hydra reports a config it cannot compose in several lines (and a
    hint about HYDRA_FULL_ERROR), which become our one `error:` line; anything else passes through on release."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.held = stream, io.StringIO()

    def write(self, text: str) -> int:
        return (self.held if sys.stderr is self else self.stream).write(text)

    def flush(self) -> None:
        self.stream.flush()

    def release(self) -> None:
        if sys.stderr is self:
            sys.stderr = self.stream
            self.stream.write(self.held.getvalue())


if __name__ == "__main__":
    skip_exit_collection()
    if {"--help", "-h"} & set(sys.argv[1:]):
        from pipeline.help import print_help

        print_help(CONF_DIR, [a for a in sys.argv[1:] if not a.startswith("-")])  # overrides only, not flags
        sys.exit(0)
    sys.stderr = _HELD = _HeldStderr(sys.stderr)
    try:
        main()
    except SystemExit as exc:
        # Hydra reports a config it cannot compose (a typo in an override, an unknown option) and exits 1, like a
        # crash; before the run started that is the user's mistake: one line, exit 2.
        if exc.code == 1 and not _task_started:
            sys.stderr = _HELD.stream
            print(f"error: {compose_error(_HELD.held.getvalue(), sys.argv[1:])}", file=sys.stderr)
            sys.exit(2)
        raise
    finally:
        _HELD.release()

"""Reproducible fine-tuning pipeline for text classification: Hydra stages, MLflow tracking, method zoo."""

import logging
import os

from pipeline.deferred import defer_import

# bitsandbytes (imported by transformers' Trainer) warns on every CPU import that it cannot fetch an optional
# kernel from the Hugging Face Hub; it falls back to its own kernel, so the warning is only noise here.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


defer_import("bitsandbytes")

__version__ = "0.1.0"

# MLflow's own variable as the process was launched with it: `mlflow.set_tracking_uri` (which every run calls)
# rewrites it for subprocesses, so read later it would hand a run the store of the previous run in the process.
LAUNCH_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI") or None

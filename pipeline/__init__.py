"""Reproducible fine-tuning pipeline for text classification: Hydra stages, MLflow tracking, method zoo."""

import logging

# bitsandbytes (imported by transformers' Trainer) warns on every CPU import that it cannot fetch an optional
# kernel from the Hugging Face Hub; it falls back to its own kernel, so the warning is only noise here.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__version__ = "0.1.0"

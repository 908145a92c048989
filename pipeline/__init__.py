"""Reproducible fine-tuning pipeline for text classification: Hydra stages, MLflow tracking, method zoo."""

__version__ = "0.1.0"

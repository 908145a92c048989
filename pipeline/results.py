"""The one interface every stage result shares, so the runner handles all stages alike."""

from __future__ import annotations

from typing import Any


class StageResult:
    """What a stage returns: its scalar metrics, why it skipped (if it did), and facts for the run manifest."""

    skipped_reason: str | None = None  # set (as a field or attribute) by a stage that had nothing to do

    def metrics(self) -> dict[str, float]:
        """Scalar figures, logged to MLflow as `<stage>/<name>` and written to summary.json."""
        return {}

    def manifest(self) -> dict[str, Any]:
        """Entries this stage adds to manifest.json (the exact split rows, what training ran on)."""
        return {}

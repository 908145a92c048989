"""Allowed ranges of numeric config fields, declared beside each field and checked before any work starts.

Hydra checks a value's type at compose time but not its range, so `train.max_steps=-5` used to train a full
epoch and `method.r=0` failed inside peft after the split had run. A field declares its range once, in its
dataclass (`r: int = positive(16)`); `check_ranges` walks the composed config and reports the first value out of
range as one line naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field (None, for an optional field, is always allowed)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: `low` itself is not allowed
    high_open: bool = False
    also: float | None = None  # one value allowed outside the range, with its meaning (e.g. -1: "unset")
    also_means: str = ""

    def allows(self, v: float) -> bool:
        if self.also is not None and v == self.also:
            return True
        above = self.low is None or (v > self.low if self.low_open else v >= self.low)
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return above and below

    def expected(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"{self.also:g} ({self.also_means}) or a value {text}" if self.also is not None else f"a value {text}"


def ranged(default: Any, allowed: Range) -> Any:
    """A dataclass field with a default and an allowed range."""
    return dataclasses.field(default=default, metadata={"range": allowed})


def positive(default: Any) -> Any:
    """A count, size or rate that must be > 0."""
    return ranged(default, Range(low=0, low_open=True))


def at_least(low: float, default: Any) -> Any:
    return ranged(default, Range(low=low))


def split_fraction(default: Any) -> Any:
    """A split's share of the rows: above 0 and below half, so the training split stays the largest."""
    return ranged(default, Range(low=0, high=0.5, low_open=True, high_open=True))


def probability(default: Any) -> Any:
    """A probability in [0, 1)."""
    return ranged(default, Range(low=0, high=1, high_open=True))


def check_ranges(cfg: DictConfig, prefix: str = "") -> None:
    """Raise a one-line PipelineError for the first value outside its field's declared range."""
    schema = OmegaConf.get_type(cfg)
    ranges = (
        {f.name: f.metadata["range"] for f in dataclasses.fields(schema) if "range" in f.metadata}
        if dataclasses.is_dataclass(schema)
        else {}
    )
    for key, node in cfg.items_ex(resolve=False):
        if isinstance(node, DictConfig):
            check_ranges(node, f"{prefix}{key}.")
        elif key in ranges:
            v = cfg[key]
            if v is not None and not ranges[key].allows(v):
                raise PipelineError(f"{prefix}{key}: {v!r} is out of range; expected {ranges[key].expected()}")

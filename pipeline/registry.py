"""A name -> instance registry filled by a class decorator, over a package whose modules are found on first use."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from pipeline.errors import PipelineError

T = TypeVar("T")


class Registry(Generic[T]):
    """Registered `kind`s (e.g. "method"), one instance per class, looked up by the class's `name`."""

    def __init__(self, kind: str, package: str, path: Iterable[str]) -> None:
        self.kind, self.package, self.path = kind, package, list(path)
        self.entries: dict[str, T] = {}

    def register(self, cls: type) -> type:
        """Class decorator: make an instance of `cls` available under `cls.name`."""
        if cls.name in self.entries:
            raise RuntimeError(f"{self.kind} {cls.name!r} registered twice")
        self.entries[cls.name] = cls()
        return cls

    def _discover(self) -> None:
        for info in pkgutil.iter_modules(self.path):  # importing a module runs its decorators
            importlib.import_module(f"{self.package}.{info.name}")

    def all(self) -> list[T]:
        """Every registered entry, sorted by name."""
        self._discover()
        return [self.entries[name] for name in sorted(self.entries)]

    def get(self, name: Any) -> T:
        """The entry registered as `name`, or a PipelineError (naming `<kind>.name`) listing the known ones."""
        self._discover()
        if name not in self.entries:
            raise PipelineError(
                f"{self.kind}.name: unknown {self.kind} {name!r}; expected one of {sorted(self.entries)}"
            )
        return self.entries[name]

"""A module imported on first use rather than where it is imported: for bitsandbytes, which peft imports eagerly.

`peft.helpers` imports bitsandbytes on every `import peft`, and bitsandbytes' import runs `torch.compile`, which loads
torch's dynamo and inductor: about 1 s of every start-up (the train stage's pre-flight check imports peft), though
only QLoRA and lora_int8 use it. Written here because the standard library's `importlib.util.LazyLoader` loads on
any attribute, `__file__` included, and `inspect.getmodule` (which torch calls when it registers an operator) reads
`__file__` of every module: that started bitsandbytes' import in the middle of another's and left it half done.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from importlib.machinery import ModuleSpec
from typing import Any


class DeferredModule(types.ModuleType):
    """Holds a module's import metadata; its code runs on the first attribute the metadata does not answer.

    `__path__` is one of those, so importing a submodule (`import bitsandbytes.nn`) runs the package first, as an
    eager import would. While the code runs the module is a plain one, so lookups see what it has defined so far.
    """

    def __getattr__(self, attr: str) -> Any:
        spec: ModuleSpec = self.__spec__
        self.__class__ = types.ModuleType
        if spec.submodule_search_locations is not None:
            self.__path__ = spec.submodule_search_locations  # the package's relative imports need it
        try:
            spec.loader.exec_module(self)
        except BaseException:
            sys.modules.pop(self.__name__, None)  # as a failed eager import leaves it: the next import retries
            raise
        return getattr(self, attr)


def defer_import(name: str) -> None:
    """Put `name` in sys.modules as a DeferredModule (unless it is imported already or not installed)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    module.__dict__.pop("__path__", None)  # read on a submodule import, which must run the package first
    module.__class__ = DeferredModule
    sys.modules[name] = module

"""pipeline.deferred: a module's code runs on first use, not on import, and then behaves as an eager import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.deferred import defer_import
from tests.conftest import cli_env


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package `deferred_probe` that counts how often its code runs, with a submodule importing from it."""
    root = tmp_path / "deferred_probe"
    root.mkdir()
    (root / "__init__.py").write_text(
        "import builtins\nbuiltins.deferred_probe_runs = getattr(builtins, 'deferred_probe_runs', 0) + 1\n"
        "from . import helper\nVALUE = helper.HALF * 2\n"
    )
    (root / "helper.py").write_text("HALF = 21\n")
    (root / "sub.py").write_text("from deferred_probe import VALUE\nDOUBLE = VALUE * 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n.partition(".")[0] == "deferred_probe"]:
        monkeypatch.delitem(sys.modules, name)
    import builtins

    monkeypatch.setattr(builtins, "deferred_probe_runs", 0, raising=False)
    yield "deferred_probe"
    for name in [n for n in sys.modules if n.partition(".")[0] == "deferred_probe"]:
        del sys.modules[name]


def runs() -> int:
    import builtins

    return builtins.deferred_probe_runs


def test_code_runs_on_first_attribute_not_on_import_or_metadata(package: str) -> None:
    defer_import(package)
    import deferred_probe

    assert runs() == 0
    assert deferred_probe.__file__.endswith("__init__.py") and deferred_probe.__spec__.name == package
    assert runs() == 0  # inspect.getmodule reads __file__ of every module: that must not run it
    assert deferred_probe.VALUE == 42
    assert runs() == 1
    assert deferred_probe.helper.HALF == 21 and runs() == 1
    assert type(deferred_probe).__name__ == "module"  # a plain module from then on


def test_a_submodule_import_runs_the_package_first(package: str) -> None:
    defer_import(package)
    from deferred_probe.sub import DOUBLE

    assert DOUBLE == 84
    assert runs() == 1


def test_a_failing_module_raises_at_use_and_is_retried_by_the_next_import(package: str, tmp_path: Path) -> None:
    init = tmp_path / package / "__init__.py"
    good = init.read_text()
    init.write_text("raise ImportError('broken on purpose')\n")
    defer_import(package)
    import deferred_probe

    with pytest.raises(ImportError, match="broken on purpose"):
        _ = deferred_probe.VALUE
    assert package not in sys.modules  # as a failed eager import leaves it
    init.write_text(good)
    import deferred_probe as again

    assert again.VALUE == 42


def test_absent_or_already_imported_modules_are_left_alone(package: str) -> None:
    defer_import("no_such_module_anywhere")
    assert "no_such_module_anywhere" not in sys.modules
    import deferred_probe

    defer_import(package)
    assert sys.modules[package] is deferred_probe and runs() == 1


def test_importing_peft_no_longer_imports_bitsandbytes() -> None:
    """The reason for pipeline.deferred: peft imports bitsandbytes, whose import loads torch's inductor (~1 s)."""
    pytest.importorskip("bitsandbytes")
    code = (
        "import sys, pipeline, peft\n"
        "assert 'bitsandbytes.nn' not in sys.modules and 'torch._inductor.compile_fx' not in sys.modules\n"
        "import bitsandbytes as bnb\n"
        "assert bnb.nn.Linear4bit.__name__ == 'Linear4bit'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr

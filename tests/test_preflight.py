"""Pre-flight checks in a forked process: the verdict the parent gets is the checks' own, whatever happens to them."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from pipeline import preflight as preflight_module
from pipeline.errors import PipelineError
from pipeline.preflight import forking_pays, preflight

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the forked path runs on Linux only")


def _ok() -> None:
    pass


def _bad_setting() -> None:
    raise PipelineError("train.optim: 'adamw_nope' is not a transformers optimizer")


class _Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("held a lock")
        self.lock = threading.Lock()


def _raise_unpicklable() -> None:
    raise _Unpicklable


def _die() -> None:
    os._exit(7)


def test_a_forked_check_passes_and_runs_in_another_process(tmp_path):
    marker = tmp_path / "pid"
    with preflight([lambda: marker.write_text(str(os.getpid())), _ok], fork=True) as verdict:
        verdict()
    assert int(marker.read_text()) != os.getpid()


def test_a_forked_checks_error_is_raised_here_with_its_message():
    with pytest.raises(PipelineError, match=r"^train.optim: 'adamw_nope' is not a transformers optimizer$"):
        with preflight([_ok, _bad_setting, _die], fork=True) as verdict:  # the first error ends the checks
            verdict()


def test_an_unpicklable_error_arrives_as_its_traceback():
    with pytest.raises(RuntimeError, match=r"(?s)pre-flight check failed:.*_Unpicklable: held a lock"):
        with preflight([_raise_unpicklable], fork=True) as verdict:
            verdict()


def test_a_check_process_that_dies_is_reported_with_its_exit_code():
    with pytest.raises(RuntimeError, match="their process died \\(exit code 7\\)"):
        with preflight([_die], fork=True) as verdict:
            verdict()


def test_a_verdict_nobody_waits_for_is_stopped_with_the_block(tmp_path):
    marker = tmp_path / "finished"
    start = time.perf_counter()
    with pytest.raises(PipelineError, match="model.name_or_path"):
        with preflight([lambda: (time.sleep(30), marker.write_text("x"))], fork=True):
            raise PipelineError("model.name_or_path: an earlier error, raised before the verdict is asked for")
    assert time.perf_counter() - start < 10 and not marker.exists()


def test_a_verdict_that_never_comes_is_a_bounded_wait(monkeypatch):
    monkeypatch.setattr(preflight_module, "VERDICT_TIMEOUT_S", 0.5)
    with pytest.raises(PipelineError, match="gave no verdict in 0.5 s"):
        with preflight([lambda: time.sleep(30)], fork=True) as verdict:
            verdict()


def test_checks_run_here_when_forking_does_not_pay(tmp_path):
    ran = []
    with preflight([lambda: ran.append(os.getpid())], fork=False) as verdict:
        assert ran == []  # run when the verdict is asked for, as the forked ones are awaited
        verdict()
    assert ran == [os.getpid()]
    with pytest.raises(PipelineError):
        with preflight([_bad_setting], fork=False) as verdict:
            verdict()


def test_forking_pays_only_before_peft_is_loaded_and_with_one_thread(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", sys.modules.get("peft", object()))
    assert not forking_pays()  # the checks' imports are done: they take ~0.1 s here
    monkeypatch.delitem(sys.modules, "peft")
    assert forking_pays() == (threading.active_count() == 1)
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert not forking_pays()  # a fork would copy locks the other thread may hold
    finally:
        stop.set()
        worker.join()

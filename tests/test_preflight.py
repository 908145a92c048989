"""Pre-flight checks in a forked process: the verdict the parent gets is the checks' own, whatever happens to them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline import preflight as preflight_module
from pipeline.errors import PipelineError
from pipeline.preflight import forking_pays, preflight
from tests.test_cli import REPO

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


class _OneWayError(PipelineError):
    """Pickles, but cannot be rebuilt: its constructor takes a keyword-only argument."""

    def __init__(self, *, field: str) -> None:
        super().__init__(f"{field}: wrong")


def _raise_one_way() -> None:
    raise _OneWayError(field="method.r")


def _bug() -> None:
    raise ValueError("a bug in a check")


def _interrupt_then_pass() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaches the whole process group; the parent answers it
    time.sleep(0.2)


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


@pytest.mark.parametrize(
    ("check", "shown"),
    [
        (_bug, "ValueError: a bug in a check"),
        (_raise_unpicklable, "_Unpicklable: held a lock"),
        (_raise_one_way, "_OneWayError: method.r: wrong"),
    ],
)
def test_a_bug_or_an_error_that_cannot_travel_arrives_as_its_traceback(check, shown):
    with pytest.raises(RuntimeError, match=rf"(?s)pre-flight check failed:.*Traceback.*{shown}"):
        with preflight([check], fork=True) as verdict:
            verdict()


def test_the_checks_leave_ctrl_c_to_the_parent():
    with preflight([_interrupt_then_pass], fork=True) as verdict:
        verdict()


def _alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (dead, not yet reaped by whoever adopted it) does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_checks_die_with_their_parent(tmp_path):
    """A parent SIGKILLed while its checks run (no block to stop them) leaves no check process behind."""
    pid_file = tmp_path / "child.pid"
    code = (
        "import os, signal, time\n"
        "from pipeline.preflight import preflight\n"
        f"check = lambda: (open({str(pid_file)!r}, 'w').write(str(os.getpid())), time.sleep(60))\n"
        "with preflight([check], fork=True) as verdict:\n"
        f"    while not os.path.exists({str(pid_file)!r}): time.sleep(0.05)\n"
        "    time.sleep(0.2)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    # No pipes: an orphaned check process would hold them open, and the run would wait for it instead of failing.
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert done.returncode == -signal.SIGKILL
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphaned = _alive(child)
    if orphaned:
        os.kill(child, signal.SIGKILL)
    assert not orphaned


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


def test_forking_does_not_pay_once_cuda_is_initialised(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.delitem(sys.modules, "peft", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert not forking_pays()  # an earlier multirun job used the GPU: a forked child could not


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

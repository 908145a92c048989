"""The entry points' process hygiene: exit without CPython's exit-time collections over every object."""

from __future__ import annotations

import subprocess
import sys

from tests.test_cli import REPO


def test_objects_are_frozen_once_the_exit_hooks_run():
    # An exit hook registered before ours runs after it (hooks run last-in, first-out) and sees the frozen objects.
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "from pipeline.process import skip_exit_collection\n"
        "print('before', gc.get_freeze_count())\n"
        "skip_exit_collection()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["before", "0", "frozen", "True"], done.stdout + done.stderr

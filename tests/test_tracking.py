"""Ending a run survives a busy store and an interrupt that arrives in the middle of an MLflow write."""

from __future__ import annotations

import os
import signal

import mlflow
import pytest

from pipeline import tracking


def test_sigterm_during_a_write_is_raised_once_the_write_has_finished():
    previous = signal.signal(signal.SIGTERM, tracking._SigtermGate.handle)
    finished = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with tracking._SigtermGate.closed():
                os.kill(os.getpid(), signal.SIGTERM)  # handled at once, inside the "write"
                finished.append("write")
        assert finished == ["write"] and not tracking._SigtermGate.pending
        with pytest.raises(KeyboardInterrupt):  # outside a write it interrupts at once
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_ending_a_run_retries_a_locked_store_and_gives_up_on_other_errors(monkeypatch):
    calls = []

    def flaky_end_run(status):
        calls.append(status)
        if len(calls) < 3:
            raise mlflow.exceptions.MlflowException("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(mlflow, "end_run", flaky_end_run)
    monkeypatch.setattr(tracking, "END_WAIT_S", 0.0)
    tracking.end_run("KILLED")
    assert calls == ["KILLED"] * 3

    def broken_end_run(status):
        raise mlflow.exceptions.MlflowException("no such run")

    monkeypatch.setattr(mlflow, "end_run", broken_end_run)
    with pytest.raises(mlflow.exceptions.MlflowException, match="no such run"):
        tracking.end_run("KILLED")

"""A worker's shutdown is bounded: SIGTERM arms a timer that ends the process if stopping hangs."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path

import pytest

from agents.worker import BoundedWorker, create_app
from config.settings import Settings


def test_sigterm_arms_the_hard_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first SIGTERM starts the timer; when it runs out the hard exit is called (here: recorded)."""
    loop = asyncio.new_event_loop()
    try:
        app = create_app(Settings(data_dir=tmp_path, app_id="shutdown-test"))
        worker = BoundedWorker(app, shutdown_timeout_s=0.05, loop=loop, quiet=True)
        fired = threading.Event()
        monkeypatch.setattr(worker, "_exit_hard", fired.set)
        monkeypatch.setattr(worker, "_stop_on_signal", lambda sig: asyncio.sleep(0))  # stopping "hangs"
        worker._schedule_shutdown(signal.SIGTERM)
        assert fired.wait(5.0)
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()


class _Exited(Exception):
    pass


def test_the_hard_exit_exits_even_when_stderr_has_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mode replaces sys.stderr with a logging proxy without fileno(); the stack dump must not stop the exit."""
    loop = asyncio.new_event_loop()
    try:
        worker = BoundedWorker(create_app(Settings(data_dir=tmp_path)), shutdown_timeout_s=1, loop=loop, quiet=True)
        codes: list[int] = []

        def fake_exit(code: int) -> None:
            codes.append(code)
            raise _Exited

        class NoFile:
            def fileno(self) -> int:
                raise NotImplementedError

            def write(self, text: str) -> int:
                return len(text)

        monkeypatch.setattr("agents.worker.os._exit", fake_exit)
        monkeypatch.setattr("sys.__stderr__", NoFile())
        monkeypatch.setattr("sys.stderr", NoFile())
        with pytest.raises(_Exited):
            worker._exit_hard()
        assert codes == [1]
    finally:
        loop.close()

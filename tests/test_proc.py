"""The one subprocess runner: timeouts and cancels stop the whole process group, INT -> TERM -> KILL."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from pathlib import Path

import pytest

from plait import proc

STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def test_timeout_escalates_to_kill_for_a_child_ignoring_int_and_term(caplog: pytest.LogCaptureFixture,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proc, "STOP_GRACE_SECONDS", (0.3, 0.3))
    caplog.set_level(logging.INFO, logger="plait.proc")
    started = time.monotonic()
    done = proc.run([sys.executable, "-c", STUBBORN], timeout=1.0)
    assert done.timed_out and done.returncode == -9
    assert time.monotonic() - started < 10
    steps = [r.getMessage() for r in caplog.records if "stopping" in r.getMessage()]
    assert [s.split()[-1] for s in steps] == ["SIGINT", "SIGTERM", "SIGKILL"]


def test_a_polite_child_stops_at_sigint(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # A generous grace: on a loaded machine the child may need seconds to get to its exit.
    monkeypatch.setattr(proc, "STOP_GRACE_SECONDS", (60.0, 60.0))
    caplog.set_level(logging.INFO, logger="plait.proc")
    done = proc.run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    assert done.timed_out
    steps = [r.getMessage() for r in caplog.records if "stopping" in r.getMessage()]
    assert len(steps) == 1 and steps[0].endswith("SIGINT")


def test_cancel_stops_grandchildren_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    proc.run(script, shell=True, cancel=cancel, timeout=30)
    assert time.monotonic() - started < 10
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_output_to_one_log_file(tmp_path: Path) -> None:
    log = tmp_path / "log"
    done = proc.run("echo out; echo err >&2; exit 3", shell=True, stdout_path=log, stderr_path=log)
    assert done.returncode == 3 and not done.ok
    assert log.read_text().split() == ["out", "err"]


def test_a_child_that_prints_then_hangs_is_stopped_as_stalled(tmp_path: Path) -> None:
    # The outer timeout only bounds the test: the stall, not the clock, must end the run.
    script = "import time; print('Reconnecting... 1/5 (connection refused)', flush=True); time.sleep(120)"
    done = proc.run([sys.executable, "-c", script], timeout=120, stall=0.5,
                    stdout_path=tmp_path / "out", stderr_path=tmp_path / "err")
    assert done.stalled and not done.timed_out and not done.ok
    assert "Reconnecting" in done.stdout


def test_a_child_that_keeps_printing_is_not_stalled(tmp_path: Path) -> None:
    script = "import time\nfor i in range(20):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
    done = proc.run([sys.executable, "-c", script], timeout=120, stall=5,
                    stdout_path=tmp_path / "out", stderr_path=tmp_path / "err")
    assert done.ok and not done.stalled and done.stdout.split()[-1] == "19"


def test_retry_notices_alone_are_not_progress(tmp_path: Path) -> None:
    # Codex pointed at a dead server prints "Reconnecting..." at growing intervals until stopped.
    script = ("import sys, time\nfor i in range(600):\n"
              "    print('{\"type\":\"error\",\"message\":\"Reconnecting... %d\"}' % i, flush=True)\n"
              "    time.sleep(0.05)\n")
    done = proc.run([sys.executable, "-c", script], timeout=120, stall=1.0, quiet=re.compile(rb"Reconnecting\.\.\."),
                    stdout_path=tmp_path / "out", stderr_path=tmp_path / "out")
    assert done.stalled and "Reconnecting" in done.stdout

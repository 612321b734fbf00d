"""A run is live while its process holds the run's lock — during integration too — and only then:
status, resume and cancel ask the lock, never a heartbeat's age."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from plait.run import liveness
from runfixtures import common_dir, make_repo, plait, task, write_plan
from test_cancel import wait_for

HOLD = """
import sys, time
from pathlib import Path
from plait.run.liveness import RunLock
with RunLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_the_lock_is_held_while_its_process_lives_and_dropped_when_it_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1.lock"
    assert not liveness.held(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        for _ in range(50):  # asking never takes it: a runner starting now is not misled
            assert liveness.held(path)
        assert liveness.holder(path) == holder.pid
        try:
            with liveness.RunLock(path):
                raise AssertionError("a second holder got the lock")
        except liveness.Taken as taken:
            assert taken.pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not liveness.held(path)  # the kernel dropped it with the process
    with liveness.RunLock(path):
        assert liveness.held(path)
    assert not liveness.held(path)


def test_a_run_is_live_while_it_integrates_and_cancel_stops_the_integration(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [task("a", {"a.txt": "a"})], integration={"verify": "sleep 120"})
    proc = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan)], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = wait_for(repo, "integration.started")
        # A heartbeat long gone by: a clock-based check would call the run dead now.
        db = sqlite3.connect(common_dir(repo) / "plait" / "state.db")
        db.execute("UPDATE runs SET heartbeat_at=0, started_at=0 WHERE id=?", (run_id,))
        db.commit()
        db.close()
        doc = json.loads(plait(repo, "status", run_id, "--json").stdout)
        assert doc["status"] == "running" and doc["phase"] == "integration"
        again = plait(repo, "resume", run_id)
        assert again.returncode == 1 and "still running" in again.stdout + again.stderr
        done = plait(repo, "cancel", run_id)
        assert done.returncode == 0 and "cancelling" in done.stdout
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    doc = json.loads(plait(repo, "status", run_id, "--json").stdout)
    assert doc["status"] == "cancelled"
    assert not (common_dir(repo) / "plait" / "runs" / f"{run_id}.lock").exists() or \
        not liveness.held(common_dir(repo) / "plait" / "runs" / f"{run_id}.lock")


def test_a_killed_run_is_interrupted_at_once_and_cancel_then_records_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [task("slow", {"s.txt": "x"}, delay="60s")])
    proc = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan)], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id = wait_for(repo, "task.workspace")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    doc = json.loads(plait(repo, "status", run_id, "--json").stdout)
    assert doc["status"] == "interrupted"  # no waiting for a heartbeat to go stale
    done = plait(repo, "cancel", run_id)
    assert done.returncode == 0 and "already gone" in done.stdout

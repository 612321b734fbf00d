"""`plait status` from another shell while a run is live, and `plait cancel`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

from hostile import marked, wait_gone
from runfixtures import events, latest_run, make_repo, plait, task, write_plan


def wait_for(repo: Path, kind: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            run_id = latest_run(repo)
            if any(e["kind"] == kind for e in events(repo, run_id)):
                return run_id
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event")


def test_status_while_running_then_cancel_stops_agents(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [task("slow", {"s.txt": "x"}, delay="60s"), task("slow2", {"t.txt": "x"}, delay="60s"),
                             task("later", {"l.txt": "x"}, needs=["slow"])])
    proc = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan), "--jobs", "2"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = wait_for(repo, "task.workspace")
        doc = json.loads(plait(repo, "status", "--json").stdout)
        assert doc["run_id"] == run_id and doc["status"] == "running"
        assert {"run_id", "status", "phase", "completed_tasks", "failed_tasks", "output"} <= set(doc)
        assert doc["counts"]["running"] == 2
        started = time.monotonic()
        done = plait(repo, "cancel", run_id)
        assert done.returncode == 0, done.stderr
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - started < 20, "cancel must not wait for the 60 s agents"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    doc = json.loads(plait(repo, "status", run_id, "--json").stdout)
    assert doc["status"] == "cancelled"
    states = {t["id"]: t["state"] for t in doc["tasks"]}
    assert states["later"] in ("cancelled", "blocked")
    assert "Traceback" not in err


def test_sigterm_stops_the_agents_and_leaves_a_resumable_run(tmp_path: Path) -> None:
    # The agent works for a long time unless stopped; its sleep is marked to find it from outside.
    mark = f"60.{random.randrange(10**6, 10**7)}"
    command = f"sleep {mark}; echo done > out.txt"
    toml = f"[profiles.slow]\nadapter = \"shell\"\ncommand = '{command}'\n"
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})
    plan = write_plan(repo, [{"id": "a", "title": "slow", "prompt": "p", "agent": "slow", "files": ["out.txt"]}])
    proc = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan)], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = wait_for(repo, "task.workspace")
        deadline = time.monotonic() + 30
        while not (agents := marked(mark)) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    assert agents and wait_gone(agents) == [], "the agent outlived plait"
    doc = json.loads(plait(repo, "status", run_id, "--json").stdout)
    assert doc["status"] == "interrupted"

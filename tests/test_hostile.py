"""A hostile agent, run for real through `plait run`: whatever it does, the user's repository stays
byte-identical (HEAD, refs, packed-refs, index, config, hooks, stash, worktrees, every working file
and its mode), nothing it starts outlives its attempt, and plait reports what it tried.

Each attack is a shell script run by the agent in its workspace: by the built-in `script` agent's
`run:` and by a `shell` profile here, and by the real Claude Code and Codex binaries (through their
own shell tools, driven by plait's scripted model server) in tests/agents/test_hostile_clis.py.
Workspaces are placed *inside* the user's checkout (`.plait/ws`), the harder case: a git run in a
workspace whose `.git` is gone would find the user's repository there if nothing stopped it.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostile import (
    ATTACKS,
    assert_nothing_outlives_the_attempt,
    check_attack,
    fill,
    hostile_repo,
    marked,
    run_attack,
    wait_gone,
)
from runfixtures import events, git, latest_run, plait, write_plan


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from hostile_repo(tmp_path, monkeypatch)


@pytest.mark.parametrize("agent", ["script", "shell"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_hostile_agent_changes_nothing_of_the_users_and_is_reported(repo: Path, tmp_path: Path, agent: str,
                                                                      name: str) -> None:
    script, outside = fill(ATTACKS[name].script, repo)
    check_attack(repo, name, run_attack(repo, tmp_path, agent, script), outside)


def test_the_work_survives_whatever_the_agent_did_to_git(repo: Path, tmp_path: Path) -> None:
    script, _ = fill(ATTACKS[".git replaced by a symlink to the user's"].script, repo)
    doc = run_attack(repo, tmp_path, "script", script + "\necho kept > kept.txt")
    run_id = doc["run_id"]
    assert git(repo, "show", f"plait/{run_id}/evil:kept.txt") == "kept"
    assert git(repo, "show", f"plait/{run_id}/evil:evil.txt") == "evil"
    assert git(repo, "rev-parse", f"plait/{run_id}/integration") == git(repo, "rev-parse", f"plait/{run_id}/evil")


@pytest.mark.parametrize("agent", ["script", "shell"])
def test_nothing_the_agent_starts_outlives_its_attempt(repo: Path, tmp_path: Path, agent: str) -> None:
    assert_nothing_outlives_the_attempt(repo, tmp_path, agent)


def test_sigkill_of_plait_ends_its_agents_and_resume_never_sees_their_writes(repo: Path, tmp_path: Path) -> None:
    """The agent writes, sleeps, then writes again; plait is SIGKILLed while it sleeps. The old agent
    must be gone (it can never write into the resumed attempt), and the resumed commit is exact."""
    mark = f"3.{random.randrange(10**6, 10**7)}"
    task = {"id": "slow", "title": "slow", "prompt": "p", "files": ["out.txt"],
            "script": {"run": [f"echo started > out.txt; sleep {mark}; echo late >> out.txt"]},
            "verify": "test \"$(cat out.txt)\" = \"$(printf 'started\\nlate')\""}
    plan = write_plan(repo, [task])
    runner = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan)], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (agents := marked(mark)):
            assert time.monotonic() < deadline and runner.poll() is None, "the agent never started"
            time.sleep(0.05)
    finally:
        runner.send_signal(signal.SIGKILL)  # plait alone: its agents run in sessions of their own
        runner.wait()
    assert wait_gone(agents) == [], "the agent outlived a SIGKILLed plait"
    run_id = latest_run(repo)
    done = plait(repo, "resume", run_id, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(repo, "show", f"plait/{run_id}/slow:out.txt") == "started\nlate"
    assert [e["data"]["attempt"] for e in events(repo, run_id) if e["kind"] == "task.started"] == [1, 2]

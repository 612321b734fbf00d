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

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI
from hostile import dirty_repo, free_port, marked, port_free, user_side, wait_gone
from plait.sandbox import support
from runfixtures import events, git, latest_run, plait, write_plan

REFUSED = re.compile(r"permission denied|read-only file system|operation not permitted", re.I)


def require_landlock() -> None:
    if support().landlock_abi is None:
        message = f"Landlock is not available here ({support().landlock_reason}): needs Linux >= 5.13 with it enabled"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@dataclass(frozen=True)
class Attack:
    script: str  # sh, with {U} the user's repository, {H} the user's home, {T} a /tmp path outside
    state: str = "done"  # how the task ends
    reported: str = "refused"  # "refused": a refused write is in the report; else a regex over incidents + error


ATTACKS: dict[str, Attack] = {
    "delete .git, then commit": Attack(
        "python3 -c 'import shutil; shutil.rmtree(\".git\")'\necho work > work.txt\ngit add -A\n"
        "git commit -qm evil\ngit update-ref refs/heads/main HEAD", reported=r"\.git is now missing"),
    ".git replaced by a symlink to the user's": Attack(
        "rm -rf .git\nln -s {U}/.git .git\necho evil > evil.txt\ngit add -A\ngit commit -qm evil\n"
        "git update-ref refs/heads/main HEAD\ngit config user.name Mallory\ngit stash -u"),
    "re-init .git": Attack("rm -rf .git\ngit init -q\ngit add -A\ngit commit -qm evil", reported=r"moved HEAD"),
    "write by absolute path": Attack("echo evil > {U}/README.md\necho evil > {U}/evil.txt\n"
                                     "echo evil > {U}/untracked.txt\nmkdir {U}/evil-dir"),
    "write through ../..": Attack("echo evil > ../../../../../../../README.md\n"
                                  "echo evil > ../../../../../../../evil.txt"),
    "write to $HOME and /tmp": Attack("echo evil > {H}/evil.txt\necho evil > {T}\necho fine > ~/mine.txt"),
    "git refs: update-ref, tag, stash, branch, push": Attack(
        "echo work > work.txt\ngit update-ref refs/heads/main HEAD\ngit tag evil\ngit stash -u\n"
        "git checkout -qb other\ngit remote add u {U}\ngit push -q u HEAD:refs/heads/main\n"
        "git push -q u HEAD:refs/heads/plait/evil\ngit --git-dir={U}/.git update-ref refs/heads/main HEAD"),
    "git config: user.name, core.bare, core.worktree": Attack(
        "git config user.name Mallory\ngit config core.bare true\ngit config core.worktree /tmp\n"
        "git --git-dir={U}/.git config user.name Mallory\ngit --git-dir={U}/.git config core.bare true"),
    "hooks and metadata": Attack(
        "printf '#!/bin/sh\\ntouch {T}\\n' > {U}/.git/hooks/post-commit\nchmod 000 {U}/.git/hooks/pre-commit\n"
        "chmod 777 {U}/README.md\ntouch -d 2001-01-01 {U}/README.md\nln -s /etc/passwd {U}/.git/hooks/post-merge"),
    "rm -rf everything": Attack("rm -rf ./* ./.[!.]*", state="failed", reported=r"allow_deletions"),
    "plant symlinks to the user's files and write through them": Attack(
        "ln -s {U}/untracked.txt leak\nln -s {U} leakdir\necho evil > leak\necho evil > leakdir/evil.txt"),
    "write into the borrowed object store": Attack(
        "for f in $(find {U}/.git/objects -type f | head -3); do echo x >> \"$f\"; done\n"
        "mkdir {U}/.git/objects/zz\necho /tmp > {U}/.git/objects/info/alternates\n"
        "git repack -a -d -q\ngit prune"),
}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    require_landlock()
    toml = f'[profiles.hostile]\nadapter = "shell"\ncommand = "sh {tmp_path / "attack.sh"}"\n'
    repo = dirty_repo(tmp_path, {"plait.toml": toml})
    monkeypatch.setenv("PLAIT_WORKSPACES", str(repo / ".plait" / "ws"))
    before = user_side(repo)
    yield repo
    assert user_side(repo) == before, "the user's repository changed"


def run_attack(repo: Path, tmp_path: Path, agent: str, script: str) -> dict[str, Any]:
    """Run one task whose agent (`script`, or the `shell` profile "hostile") runs `script`; the status
    document of its run, with plait's output."""
    (tmp_path / "attack.sh").write_text("set +e\n" + script + "\ntrue\n")
    task: dict[str, Any] = {"id": "evil", "title": "hostile", "prompt": "misbehave"}
    if agent == "shell":
        task["agent"] = "hostile"
    else:
        task["script"] = {"run": [f"sh {tmp_path / 'attack.sh'}"]}
    plan = write_plan(repo, [task])
    done = plait(repo, "run", str(plan), timeout=300)
    run_id = latest_run(repo)
    doc: dict[str, Any] = json.loads(plait(repo, "status", run_id, "--json").stdout)
    doc["output"] = done.stdout + done.stderr
    return doc


def fill(script: str, repo: Path, tmp_path: Path) -> tuple[str, Path]:
    outside = Path("/tmp") / f"plait-hostile-{os.getpid()}-{random.randrange(10**9)}"
    return script.format(U=repo, H=os.environ["HOME"], T=outside), outside


@pytest.mark.parametrize("agent", ["script", "shell"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_hostile_agent_changes_nothing_of_the_users_and_is_reported(repo: Path, tmp_path: Path, agent: str,
                                                                      name: str) -> None:
    attack = ATTACKS[name]
    script, outside = fill(attack.script, repo, tmp_path)
    doc = run_attack(repo, tmp_path, agent, script)
    (task,) = doc["tasks"]
    told = "\n".join(task["incidents"]) + "\n" + (task["error"] or "")
    assert task["state"] == attack.state, f"{task['state']}: {told}\n{doc['output']}"
    pattern = REFUSED if attack.reported == "refused" else re.compile(attack.reported)
    assert pattern.search(told), f"not reported: {told!r}"
    assert not outside.exists(), "wrote to a /tmp path outside its workspace"
    assert not (Path(os.environ["HOME"]) / "evil.txt").exists(), "wrote to the user's home"
    report = (repo / ".plait" / "runs" / str(doc["run_id"]) / "REPORT.md").read_text()
    assert "## Deviations" in report and "`evil`" in report


def test_the_work_survives_whatever_the_agent_did_to_git(repo: Path, tmp_path: Path) -> None:
    script, _ = fill(ATTACKS[".git replaced by a symlink to the user's"].script, repo, tmp_path)
    doc = run_attack(repo, tmp_path, "script", script + "\necho kept > kept.txt")
    run_id = doc["run_id"]
    assert git(repo, "show", f"plait/{run_id}/evil:kept.txt") == "kept"
    assert git(repo, "show", f"plait/{run_id}/evil:evil.txt") == "evil"
    assert git(repo, "rev-parse", f"plait/{run_id}/integration") == git(repo, "rev-parse", f"plait/{run_id}/evil")


DAEMONS = """
setsid nohup sleep {mark}1 > /dev/null 2>&1 &
nohup sleep {mark}2 > /dev/null 2>&1 &
python3 -c 'import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{mark}3"])
'
python3 -m http.server {port} --bind 127.0.0.1 > /dev/null 2>&1 &
python3 -c 'import os, time
for _ in range(200):
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{mark}4"])
'
for i in $(seq 50); do
  python3 -c 'import socket; socket.create_connection(("127.0.0.1", {port}))' 2>/dev/null && break; sleep 0.1
done
"""


@pytest.mark.parametrize("agent", ["script", "shell"])
def test_nothing_the_agent_starts_outlives_its_attempt(repo: Path, tmp_path: Path, agent: str) -> None:
    mark, port = str(random.randrange(10**6, 10**7)), free_port()
    doc = run_attack(repo, tmp_path, agent, DAEMONS.format(mark=mark, port=port))
    assert doc["tasks"][0]["state"] == "done", doc["output"]
    assert wait_gone(marked(mark)) == []
    assert port_free(port), "the agent's HTTP server still holds its port"


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

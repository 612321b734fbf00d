"""Helpers for end-to-end run tests: real git repositories, real plans, the real CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from gitfixtures import make_repo as make_repo  # re-exported for the run tests


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def task(tid: str, writes: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": tid, "title": f"task {tid}", "prompt": f"do {tid}",
                            "files": sorted(writes or {}), "script": {"write": writes or {}}}
    if "delay" in extra:
        body["script"]["delay"] = extra.pop("delay")
    body.update(extra)
    return body


def write_plan(repo: Path, tasks: list[dict[str, Any]], name: str = "plan.yaml", **extra: Any) -> Path:
    doc = {"plait": 1, "name": "test plan", **extra, "tasks": tasks}
    path = repo.parent / f"{repo.name}-{name}"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def plait(cwd: Path, *args: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "plait", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=check, env=env)


def common_dir(repo: Path) -> Path:
    return Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))


def events(repo: Path, run_id: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(common_dir(repo) / "plait" / "state.db")
    rows = db.execute("SELECT seq, task_id, ts, kind, data_json FROM events WHERE run_id=? ORDER BY seq", (run_id,))
    out = [{"seq": s, "task": t, "ts": ts, "kind": k, "data": json.loads(d)} for s, t, ts, k, d in rows]
    db.close()
    return out


def latest_run(repo: Path) -> str:
    db = sqlite3.connect(common_dir(repo) / "plait" / "state.db")
    (run_id,) = db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    db.close()
    return str(run_id)


def spans(evts: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Each task's [started, done] interval from the event log."""
    start = {e["task"]: e["ts"] for e in evts if e["kind"] == "task.started"}
    end = {e["task"]: e["ts"] for e in evts if e["kind"] in ("task.done", "task.failed")}
    return {t: (start[t], end[t]) for t in start if t in end}


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def snapshot(repo: Path) -> dict[str, str]:
    """The user's side of the repository: checkout, index, working tree and refs outside plait/."""
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return {
        "HEAD": git(repo, "symbolic-ref", "HEAD") + " " + git(repo, "rev-parse", "HEAD"),
        "status": git(repo, "status", "--porcelain", "--ignored=no", "--untracked-files=all"),
        "refs": "\n".join(r for r in refs.splitlines() if not r.startswith("refs/heads/plait/")),
        "config": (repo / ".git" / "config").read_text(),
        "index": (repo / ".git" / "index").read_bytes().hex(),
        "files": "\n".join(f"{p.relative_to(repo)}:{p.read_bytes().hex()}" for p in sorted(repo.rglob("*"))
                           if p.is_file() and ".git" not in p.parts and ".plait" not in p.parts),
    }


def require_cli(name: str) -> Path:
    """A real agent CLI from the project cache: missing fails in CI, skips locally with what to run."""
    import pytest

    from plait.testing import agent_bin

    found = agent_bin(name)
    if found is None:
        message = f"{name} is not installed: run scripts/install-agent-clis"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found

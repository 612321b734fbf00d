"""Secrets from the environment never reach logs, evidence or the state database."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait import api
from plait.run.engine import RunOptions
from runfixtures import common_dir, make_repo, write_plan

SECRET = "sk-test-9f8e7d6c5b4a3210"


def test_secret_values_are_masked_everywhere_plait_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_TEST_API_KEY", SECRET)
    command = 'echo "key=$PLAIT_TEST_API_KEY"; echo "$PLAIT_TEST_API_KEY" >&2; echo ok > out.txt'
    toml = f'[profiles.leaky]\nadapter = "shell"\nenv = ["PLAIT_TEST_API_KEY"]\ncommand = \'{command}\'\n'
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "plait.toml": toml})
    plan = write_plan(repo, [{"id": "a", "title": "leak", "prompt": "p", "agent": "leaky", "files": ["out.txt"],
                              "verify": 'echo "verify sees $PLAIT_TEST_API_KEY"; exit 1'}])
    handle, run_id = api.start(plan, RunOptions(jobs=1), cwd=repo)
    assert api.execute(handle, run_id) == "failed"
    written = [p for p in (repo / ".plait").rglob("*") if p.is_file() and "worktrees" not in p.parts]
    assert any(p.name == "verify.log" for p in written) and any(p.name == "agent.stdout" for p in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    db = common_dir(repo) / "plait"
    for path in db.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path
    log = next(p for p in written if p.name == "agent.stdout").read_text()
    assert "key=***" in log

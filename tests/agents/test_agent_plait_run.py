"""`plait run` with real agent CLIs against the scripted model server: each CLI completes a task in
its worktree, and plait captures, verifies and integrates the work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from agentkit import REAL_CLIS

from plait import api
from plait.run.engine import RunOptions
from plait.testing import ModelServer, Scenario, text, write
from runfixtures import git, make_repo, write_plan


@pytest.mark.parametrize("cli", REAL_CLIS)
def test_plait_run_with_a_real_cli(cli: str, tmp_path: Path, require_cli: Callable[[str], Path],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    binary = require_cli(cli)
    config = f'[profiles.{cli}]\nbinary = "{binary}"\ntimeout = "2m"\n'
    repo = make_repo(tmp_path / "repo", {"README.md": "# project\n", "plait.toml": config})
    git_config = (repo / ".git" / "config").read_text()
    scenario = Scenario([write("greeting.txt", f"hello from {cli}\n"), text("Wrote greeting.txt.")])
    with ModelServer(scenario) as server:
        # What a user's environment would hold; each built-in profile's allow-list passes its CLI's names.
        for name, value in {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": "key-run",
                            "OPENAI_BASE_URL": f"{server.url}/v1", "OPENAI_API_KEY": "key-run",
                            "GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": "key-run"}.items():
            monkeypatch.setenv(name, value)
        plan = write_plan(repo, [{"id": "greet", "title": "Write a greeting", "prompt": "Write greeting.txt.",
                                  "agent": cli, "files": ["greeting.txt"], "verify": "test -s greeting.txt"}],
                          integration={"verify": f"grep -q 'hello from {cli}' greeting.txt"})
        handle, run_id = api.start(plan, RunOptions(jobs=1, retry_base_seconds=0.05), cwd=repo)
        status = api.execute(handle, run_id)
        main_requests = [r for r in server.requests if r.main]
    assert status == "completed", (repo / ".plait" / "runs" / run_id).as_posix()
    assert main_requests
    assert git(repo, "show", f"plait/{run_id}/integration:greeting.txt") == f"hello from {cli}"
    # Nothing of the CLI's own (history, caches, config) ended up in the work.
    files = git(repo, "ls-tree", "-r", "--name-only", f"plait/{run_id}/integration").splitlines()
    assert sorted(files) == ["README.md", "greeting.txt", "plait.toml"]
    assert not (repo / "greeting.txt").exists()  # the user's checkout is untouched
    assert (repo / ".git" / "config").read_text() == git_config  # no identity or settings written

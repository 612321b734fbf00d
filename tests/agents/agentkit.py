"""Helpers for the agent tests: a worktree, the scripted server's env for a CLI, one adapter run."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from plait.agents.base import AgentRequest, AgentResult, Permission, Profile
from plait.agents.registry import make_agent
from plait.testing import ModelServer, Scenario, agent_bin

REAL_CLIS = ("claude", "codex", "gemini", "opencode", "aider")
STREAMS = Path(__file__).parent / "streams"


def make_worktree(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("# readme\nline two\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def server_env(server: ModelServer, api_key: str, home: Path) -> dict[str, str]:
    """What the engine's allow-list would pass, pointed at the scripted server (every CLI's names)."""
    url = server.url
    return {
        "PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": api_key,
        "OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": api_key,
        "GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": api_key,
    }


@dataclass(frozen=True)
class Outcome:
    result: AgentResult
    worktree: Path
    log_dir: Path


def run_cli(cli: str, root: Path, server: ModelServer, scenario: Scenario, *, key: str = "key",
            timeout: float = 90, model: str | None = None, max_turns: int | None = None,
            max_cost: float | None = None, permission: Permission = Permission.EDIT,
            resume: str | None = None, attempt: int = 1, prompt: str = "Do the task.") -> Outcome:
    """Run the real CLI's adapter once in a fresh (or the existing) worktree under `root`."""
    binary = agent_bin(cli)
    assert binary is not None, f"{cli} is not installed: run scripts/install-agent-clis"
    worktree = root / "repo" if (root / "repo").is_dir() else make_worktree(root)
    server.add(key, scenario)
    profile = Profile(name=cli, adapter=cli, binary=str(binary), model=model, max_turns=max_turns,
                      max_cost=max_cost, permission=permission)
    log_dir = root / "logs" / f"attempt-{attempt}"
    log_dir.mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(exist_ok=True)
    request = AgentRequest("t1", prompt, worktree, log_dir, profile, timeout, server_env(server, key, root / "home"),
                           resume_session=resume)
    return Outcome(make_agent(profile).run(request), worktree, log_dir)

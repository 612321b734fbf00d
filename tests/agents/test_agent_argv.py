"""What each adapter runs: argv and env from the profile (no CLI is started here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plait.agents.aider import AiderAgent
from plait.agents.base import AgentRequest, ErrorKind, Permission, Profile
from plait.agents.claude import ClaudeAgent, permission_args
from plait.agents.codex import CodexAgent
from plait.agents.cursor import CursorAgent
from plait.agents.gemini import GeminiAgent
from plait.agents.opencode import OpenCodeAgent
from plait.agents.registry import make_agent, register
from plait.errors import PlaitError


def request(tmp_path: Path, adapter: str, env: dict[str, str] | None = None, resume: str | None = None,
            **profile: object) -> AgentRequest:
    log_dir = tmp_path / "logs" / "attempt-1"
    log_dir.mkdir(parents=True, exist_ok=True)
    return AgentRequest("t1", "Do it.", tmp_path, log_dir, Profile(name=adapter, adapter=adapter, **profile),  # type: ignore[arg-type]
                        30.0, env or {"PATH": "/usr/bin"}, resume_session=resume)


def test_claude_argv_and_env(tmp_path: Path) -> None:
    req = request(tmp_path, "claude", model="sonnet", max_turns=7, max_cost=1.5, extra_args=("--effort", "low"),
                  env={"PATH": "/bin", "CLAUDECODE": "1"}, resume="abc")
    argv = ClaudeAgent().argv(req, "claude")
    assert argv[:5] == ["claude", "-p", "--output-format", "stream-json", "--verbose"]
    for pair in (["--model", "sonnet"], ["--max-turns", "7"], ["--max-budget-usd", "1.5"], ["--resume", "abc"]):
        assert " ".join(pair) in " ".join(argv)
    assert argv[-2:] == ["--effort", "low"]
    env = ClaudeAgent().env(req)
    assert "CLAUDECODE" not in env and env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "logs" / "claude-home")
    mine = ClaudeAgent().env(request(tmp_path, "claude", env={"CLAUDE_CONFIG_DIR": "/mine"}))
    assert mine["CLAUDE_CONFIG_DIR"] == "/mine"  # named in the profile's allow-list: the user's choice wins


def test_claude_permissions_never_use_bypass_as_root() -> None:
    assert permission_args(Permission.EDIT, True)[:2] == ["--permission-mode", "acceptEdits"]
    assert "Bash" in permission_args(Permission.EDIT, True)[3]
    assert permission_args(Permission.FULL, True)[:2] == ["--permission-mode", "acceptEdits"]
    assert permission_args(Permission.FULL, False) == ["--permission-mode", "bypassPermissions"]
    assert "Write" not in permission_args(Permission.READ_ONLY, False)[3].split(",")


def test_codex_argv_points_a_provider_at_the_base_url(tmp_path: Path) -> None:
    req = request(tmp_path, "codex", model="gpt-5", env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, resume="th1")
    argv = CodexAgent().argv(req, "codex")
    assert argv[:3] == ["codex", "exec", "--json"] and argv[-3:] == ["resume", "th1", "-"]
    assert argv[argv.index("-s"):argv.index("-s") + 2] == ["-s", "workspace-write"]
    assert 'model_providers.plait.base_url="http://127.0.0.1:9/v1"' in argv
    assert CodexAgent().env(req)["CODEX_HOME"] == str(tmp_path / "logs" / "codex-home")
    full = CodexAgent().argv(request(tmp_path, "codex", permission=Permission.FULL), "codex")
    assert "--dangerously-bypass-approvals-and-sandbox" in full and "model_provider=plait" not in " ".join(full)


def test_gemini_writes_private_settings(tmp_path: Path) -> None:
    req = request(tmp_path, "gemini", max_turns=3)
    assert GeminiAgent().argv(req, "gemini")[:8] == ["gemini", "-p", "", "-o", "stream-json", "--skip-trust",
                                                     "--approval-mode", "auto_edit"]
    env = GeminiAgent().env(req)
    home = Path(env["GEMINI_CLI_HOME"])
    settings = json.loads((home / ".gemini" / "settings.json").read_text())
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["model"]["maxSessionTurns"] == 3
    assert 'toolName = "run_shell_command"' in (home / ".gemini" / "policies" / "plait.toml").read_text()
    GeminiAgent().env(request(tmp_path, "gemini", permission=Permission.READ_ONLY))
    assert not (home / ".gemini" / "policies" / "plait.toml").exists()


def test_opencode_declares_the_provider_in_env_not_in_the_worktree(tmp_path: Path) -> None:
    req = request(tmp_path, "opencode", model="plait/m1", env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert OpenCodeAgent().argv(req, "opencode") == ["opencode", "run", "--format", "json", "-m", "plait/m1"]
    env = OpenCodeAgent().env(req)
    config = json.loads(env["OPENCODE_CONFIG_CONTENT"])
    assert config["provider"]["plait"]["options"]["baseURL"] == "http://127.0.0.1:9/v1"
    assert config["permission"]["bash"] == "allow"
    assert env["XDG_DATA_HOME"].startswith(str(tmp_path / "logs" / "opencode-home"))
    assert not (tmp_path / "opencode.json").exists()


def test_aider_keeps_its_files_out_of_the_worktree(tmp_path: Path) -> None:
    req = request(tmp_path, "aider", env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
                  permission=Permission.READ_ONLY)
    argv = AiderAgent().argv(req, "aider")
    assert {"--no-auto-commits", "--no-gitignore", "--yes-always", "--dry-run"} <= set(argv)
    assert argv[argv.index("--model") + 1] == "openai/scripted"
    assert all(str(tmp_path / "logs") in argv[argv.index(flag) + 1]
               for flag in ("--input-history-file", "--chat-history-file", "--llm-history-file"))
    assert (req.log_dir / "aider-message.md").read_text() == "Do it."


def test_cursor_passes_the_prompt_last(tmp_path: Path) -> None:
    argv = CursorAgent().argv(request(tmp_path, "cursor", resume="c1"), "cursor-agent")
    assert argv[-1] == "Do it." and "--force" in argv and argv[-3:-1] == ["--resume", "c1"]


@pytest.mark.parametrize("adapter", ["claude", "codex", "gemini", "opencode", "aider", "cursor"])
def test_a_missing_binary_is_a_clear_failure(tmp_path: Path, adapter: str) -> None:
    req = request(tmp_path, adapter, binary="no-such-cli-here", env={"PATH": str(tmp_path)})
    result = make_agent(req.profile).run(req)
    assert not result.ok and result.error_kind is ErrorKind.UNKNOWN
    assert "no-such-cli-here not found" in result.error_message and "install-agent-clis" in result.error_message
    by_path = request(tmp_path, adapter, binary=str(tmp_path / "missing" / "cli"))
    assert make_agent(by_path.profile).run(by_path).error_kind is ErrorKind.UNKNOWN


def test_registry_names_unknown_adapters_and_takes_new_ones() -> None:
    with pytest.raises(PlaitError, match="unknown adapter 'nope'"):
        make_agent(Profile(name="x", adapter="nope"))
    register("custom-test", lambda profile: ClaudeAgent())
    assert make_agent(Profile(name="x", adapter="custom-test")).name == "claude"

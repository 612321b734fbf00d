"""Which CLI binary a run uses (only what is configured), and the version it reports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plait.agents import binaries
from plait.agents.base import AgentRequest, Profile
from plait.agents.binaries import CACHE_ENV, find_binary, version

FAKE_CLI = """#!/bin/sh
echo ran >> "$(dirname "$0")/calls"
[ "$1" = --version ] && echo "WARNING: something first" >&2 && echo "fakecli 1.2.3 (test)"
"""


def _executable(path: Path, body: str = FAKE_CLI) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)
    return path


def _request(tmp_path: Path, path_var: str, binary: str | None = None) -> AgentRequest:
    profile = Profile(name="claude", adapter="claude", binary=binary)
    return AgentRequest("t1", "go", tmp_path, tmp_path / "logs", profile, 60, {"PATH": path_var})


def test_only_a_configured_cache_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cli = _executable(cache / "npm" / "node_modules" / ".bin" / "claude")
    empty = str(tmp_path / "empty")
    monkeypatch.delenv(CACHE_ENV, raising=False)
    # Not the checkout's .cache/agents (nor ~/.cache/agents), although the package lies under it here.
    assert find_binary(_request(tmp_path, empty), "claude") is None
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert find_binary(_request(tmp_path, empty), "claude") == str(cli)
    on_path = _executable(tmp_path / "bin" / "claude")
    assert find_binary(_request(tmp_path, str(on_path.parent)), "claude") == str(on_path)
    given = _executable(tmp_path / "mine" / "my-claude")
    assert find_binary(_request(tmp_path, empty, str(given)), "claude") == str(given)


def test_the_version_is_asked_once_per_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binaries, "_versions", {})
    cli = _executable(tmp_path / "bin" / "fakecli")
    env = {"PATH": os.environ["PATH"]}
    assert version(str(cli), env) == "fakecli 1.2.3 (test)"
    assert version(str(cli), env) == "fakecli 1.2.3 (test)"
    assert (tmp_path / "bin" / "calls").read_text().split() == ["ran"]
    broken = _executable(tmp_path / "bin" / "broken", "#!/bin/sh\nexit 3\n")
    assert version(str(broken), env) is None

"""The hostile-agent attacks of tests/test_hostile.py, run by the real Claude Code and Codex binaries:
plait's scripted model server makes each CLI run the attack through its own shell tool, in a workspace
inside the user's checkout. The user's repository must stay byte-identical, nothing the CLI started may
outlive the attempt, and plait must report what was tried (read from the CLI's tool events)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostile import (
    ATTACKS,
    DAEMONS,
    check_attack,
    dirty_repo,
    fill,
    free_port,
    hostile_toml,
    marked,
    port_free,
    require_landlock,
    run_attack,
    user_side,
    wait_gone,
)

CLIS = ("claude", "codex")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, require_cli: Callable[[str], Path]) -> Iterator[Path]:
    require_landlock()
    clis = {name: require_cli(name) for name in CLIS}
    repo = dirty_repo(tmp_path, {"plait.toml": hostile_toml(tmp_path, clis)})
    monkeypatch.setenv("PLAIT_WORKSPACES", str(repo / ".plait" / "ws"))
    before = user_side(repo)
    yield repo
    assert user_side(repo) == before, "the user's repository changed"


@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_hostile_real_cli_changes_nothing_of_the_users_and_is_reported(repo: Path, tmp_path: Path, cli: str,
                                                                         name: str) -> None:
    script, outside = fill(ATTACKS[name].script, repo)
    check_attack(repo, name, run_attack(repo, tmp_path, cli, script), outside)


@pytest.mark.parametrize("cli", CLIS)
def test_nothing_a_real_cli_starts_outlives_its_attempt(repo: Path, tmp_path: Path, cli: str) -> None:
    mark, port = str(random.randrange(10**6, 10**7)), free_port()
    doc = run_attack(repo, tmp_path, cli, DAEMONS.format(mark=mark, port=port))
    assert doc["tasks"][0]["state"] == "done", doc["output"]
    assert wait_gone(marked(mark)) == []
    assert port_free(port), "the agent's HTTP server still holds its port"

"""The hostile-agent attacks of tests/test_hostile.py, run by the real Claude Code and Codex binaries:
plait's scripted model server makes each CLI run the attack through its own shell tool, in a workspace
inside the user's checkout. The user's repository must stay byte-identical, nothing the CLI started may
outlive the attempt, and plait must report what was tried (read from the CLI's tool events)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostile import ATTACKS, assert_nothing_outlives_the_attempt, check_attack, fill, hostile_repo, run_attack

CLIS = ("claude", "codex")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, require_cli: Callable[[str], Path]) -> Iterator[Path]:
    yield from hostile_repo(tmp_path, monkeypatch, {name: require_cli(name) for name in CLIS})


@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_hostile_real_cli_changes_nothing_of_the_users_and_is_reported(repo: Path, tmp_path: Path, cli: str,
                                                                         name: str) -> None:
    script, outside = fill(ATTACKS[name].script, repo)
    check_attack(repo, name, run_attack(repo, tmp_path, cli, script), outside)


@pytest.mark.parametrize("cli", CLIS)
def test_nothing_a_real_cli_starts_outlives_its_attempt(repo: Path, tmp_path: Path, cli: str) -> None:
    assert_nothing_outlives_the_attempt(repo, tmp_path, cli)

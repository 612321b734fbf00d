"""Profiles from plait.toml / pyproject.toml, the built-ins, and the agent env allow-list."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.agents.base import Permission, Profile
from plait.agents.registry import make_agent
from plait.errors import PlaitError
from plait.profiles import BUILTIN_ADAPTERS, env_for, load_profiles


def test_builtins_exist_without_configuration(tmp_path: Path) -> None:
    profiles = load_profiles(tmp_path)
    assert set(profiles) == {"script", "shell", "claude", "codex", "gemini", "opencode", "aider", "cursor"}
    assert all(p.adapter == name for name, p in profiles.items())
    assert "ANTHROPIC_API_KEY" in profiles["claude"].env_allow
    for name in BUILTIN_ADAPTERS:
        assert make_agent(profiles[name]).name == name


def test_plait_toml_profiles(tmp_path: Path) -> None:
    (tmp_path / "plait.toml").write_text('''
[profiles.fast]
adapter = "claude"
model = "sonnet"
args = ["--effort", "low"]
permission = "full"
env = ["MY_TOKEN", "AWS_*"]
concurrency = 2
timeout = "30m"
max_turns = 40
max_cost = 2.5
stall = "2m"

[profiles.codex]
model = "gpt-5"
timeout = 10
stall = 0

[profiles.lint]
adapter = "shell"
command = "ruff check --fix ."
binary = "/usr/bin/env"
''')
    profiles = load_profiles(tmp_path)
    fast = profiles["fast"]
    assert fast == Profile(name="fast", adapter="claude", model="sonnet", extra_args=("--effort", "low"),
                           permission=Permission.FULL, env_allow=(*profiles["claude"].env_allow, "MY_TOKEN", "AWS_*"),
                           concurrency=2, timeout=1800.0, stall=120.0, max_turns=40, max_cost=2.5)
    assert profiles["codex"].adapter == "codex" and profiles["codex"].timeout == 600.0
    assert profiles["codex"].stall is None and profiles["claude"].stall == 300.0  # 0: off; the default: 5 min
    assert profiles["lint"].command == "ruff check --fix ." and profiles["lint"].binary == "/usr/bin/env"
    assert "script" in profiles  # built-ins stay


def test_pyproject_profiles(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.plait.profiles.reviewer]\n'
                                             'adapter = "gemini"\npermission = "read-only"\n')
    reviewer = load_profiles(tmp_path)["reviewer"]
    assert reviewer.adapter == "gemini" and reviewer.permission is Permission.READ_ONLY


@pytest.mark.parametrize(("body", "message"), [
    ('[profiles.a]\nadapter = "claude"\nmodle = "x"\n', "[profiles.a] modle: unknown key"),
    ('[profiles.a]\nmodel = "x"\n', "[profiles.a] adapter: missing"),
    ('[profiles.a]\nadapter = "gpt"\n', "[profiles.a] adapter: 'gpt' is not an adapter"),
    ('[profiles.a]\nadapter = "claude"\npermission = "yolo"\n', "[profiles.a] permission: 'yolo' is not a permission"),
    ('[profiles.a]\nadapter = "claude"\nargs = "--x"\n', "[profiles.a] args: must be a list of strings"),
    ('[profiles.a]\nadapter = "claude"\nconcurrency = 0\n', "[profiles.a] concurrency: 0 is not a whole number"),
    ('[profiles.a]\nadapter = "claude"\ntimeout = "soon"\n', "[profiles.a] timeout: 'soon' is not a duration"),
    ('[profiles.a]\nadapter = "claude"\nmax_cost = -1\n', "[profiles.a] max_cost: -1 is not a positive amount"),
    ('profiles = 3\n', "[profiles] must hold one table per profile"),
    ('[profiles.a\n', "not valid TOML"),
])
def test_bad_profiles_say_where_and_how_to_fix(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "plait.toml").write_text(body)
    with pytest.raises(PlaitError) as caught:
        load_profiles(tmp_path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "plait.toml"))
    assert caught.value.fix


def test_env_allow_list_passes_only_the_safe_base_and_named_variables() -> None:
    environ = {"PATH": "/bin", "HOME": "/h", "LANG": "C", "ANTHROPIC_API_KEY": "sk-1", "OPENAI_API_KEY": "sk-2",
               "AWS_REGION": "eu", "AWS_SECRET_ACCESS_KEY": "s3", "GITHUB_TOKEN": "ghp", "MY_TOKEN": "t"}
    claude = Profile(name="claude", adapter="claude", env_allow=("ANTHROPIC_API_KEY",))
    assert env_for(claude, environ) == {"PATH": "/bin", "HOME": "/h", "LANG": "C", "ANTHROPIC_API_KEY": "sk-1"}
    custom = Profile(name="c", adapter="shell", env_allow=("AWS_*", "MY_TOKEN"))
    assert set(env_for(custom, environ)) == {"PATH", "HOME", "LANG", "AWS_REGION", "AWS_SECRET_ACCESS_KEY",
                                             "MY_TOKEN"}

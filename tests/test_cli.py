"""The CLI: every command has help; bad input never prints a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from plait.cli import cli
from runfixtures import make_repo, plait

COMMANDS = sorted(cli.commands)


def test_expected_commands_exist() -> None:
    assert {"check", "schema", "run", "status", "resume", "cancel", "clean", "demo", "import"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    doc = cli.commands[name].help or ""
    assert len(doc.strip()) > 20, f"{name} needs a real help text"


BAD_INPUTS = [
    ("run", "--jobs=0"),
    ("nosuchcommand", "x"),
    ("check", "missing.yaml"),
    ("check", "{dir}"),
    ("check", "{bad_yaml}"),
    ("check", "{not_a_plan}"),
    ("run", "{bad_yaml}"),
    ("import", "missing.md"),
    ("import", "{bad_yaml}"),
    ("import", "{dir}"),
    ("status", "nosuchrun"),
    ("resume", "nosuchrun"),
    ("cancel", "nosuchrun"),
]


@pytest.mark.parametrize(("command", "arg"), BAD_INPUTS)
def test_bad_input_is_one_located_line_and_exit_1(tmp_path: Path, command: str, arg: str) -> None:
    repo = make_repo(tmp_path / "repo")
    (tmp_path / "bad.yaml").write_text("plait: 1\nname: x\ntasks:\n  - id: a\n    title: [unclosed\n")
    (tmp_path / "notplan.yaml").write_text("- just\n- a list\n")
    arg = arg.format(dir=tmp_path, bad_yaml=tmp_path / "bad.yaml", not_a_plan=tmp_path / "notplan.yaml")
    done = plait(repo, command, arg)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("plait: error:") for line in lines), done.stderr
    assert " — " in lines[0], "every error says how to fix it"


def test_outside_a_git_repository(tmp_path: Path) -> None:
    done = plait(tmp_path, "status")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "git" in done.stderr


def test_schema_is_json() -> None:
    import json

    result = CliRunner().invoke(cli, ["schema"])
    schema = json.loads(result.output)
    assert schema["properties"]["plait"]["const"] == 1


def test_a_bug_exits_3_with_the_traceback_in_a_log(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from plait import cli as cli_module

    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(cli_module.cli, "main", boom)
    with pytest.raises(SystemExit) as info:
        cli_module.main(["status"])
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "this is a bug" in err
    log = Path(err.rsplit("traceback is in ", 1)[1].strip())
    assert "RuntimeError: simulated bug" in log.read_text()


def test_run_says_when_uncommitted_work_is_not_part_of_the_run(tmp_path: Path) -> None:
    from runfixtures import task, write_plan

    repo = make_repo(tmp_path / "repo", {"README.md": "x\n"})
    (repo / "README.md").write_text("edited but not committed\n")
    plan = write_plan(repo, [task("a", {"a.txt": "a"})])
    done = plait(repo, "run", str(plan))
    assert done.returncode == 0, done.stderr
    assert "uncommitted change(s)" in done.stdout
    assert (repo / "README.md").read_text() == "edited but not committed\n"


def test_unknown_agent_profile_is_located_in_the_plan(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = tmp_path / "plan.yaml"
    plan.write_text("plait: 1\nname: x\ntasks:\n  - id: a\n    title: A\n    prompt: p\n    agent: nosuch\n")
    done = plait(repo, "run", str(plan))
    assert done.returncode == 1
    assert done.stderr.startswith(f"plait: error: {plan}:7:") and "nosuch" in done.stderr and " — " in done.stderr

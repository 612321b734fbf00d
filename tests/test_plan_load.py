"""load_plan: every way a plan file can be wrong gives located one-line messages with a fix."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from plait.errors import Location, PlaitError
from plait.plan.load import LoadedPlan, PlanError, load_plan
from plait.plan.model import parse_duration

VALID = """\
plait: 1
name: demo
defaults: {agent: claude,
  verify: make test}
tasks:
  - id: api
    title: Build the API
    prompt: Write the endpoints.
    files: [src/api.py]
  - id: ui
    title: Build the UI
    prompt: Write the page.
    needs: [api]
    files:
      - src/ui.py
      - src/ui_test.py
"""


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def failure(path: Path) -> PlanError:
    with pytest.raises(PlanError) as info:
        load_plan(path)
    err = info.value
    assert isinstance(err, PlaitError)
    for line in err.lines():
        assert "\n" not in line
        assert " — " in line, f"no fix in {line!r}"
        assert line.startswith(f"{path}:"), line
        assert "Input should" not in line and "pydantic" not in line, f"raw pydantic text in {line!r}"
    assert str(err) == err.lines()[0]
    return err


def test_valid_plan_loads(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    loaded = load_plan(str(path))
    assert isinstance(loaded, LoadedPlan)
    assert loaded.path == path
    assert [t.id for t in loaded.plan.tasks] == ["api", "ui"]
    assert loaded.warnings == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.plan = loaded.plan  # type: ignore[misc]


def test_locate_maps_document_paths_to_line_and_column(tmp_path: Path) -> None:
    loaded = load_plan(write(tmp_path, VALID))
    source = str(tmp_path / "plan.yaml")
    assert loaded.locate("tasks", 1, "files", 1) == Location(source, 16, 9)
    assert loaded.locate("tasks", 1) == Location(source, 10, 5)
    assert loaded.locate("tasks", 1, "needs") == Location(source, 13, 5)
    assert loaded.locate("name") == Location(source, 2, 1)
    # No such node: the nearest enclosing one that has a position.
    assert loaded.locate("tasks", 1, "verify") == Location(source, 10, 5)
    assert loaded.locate("tasks", 7) == Location(source, 5, 1)
    assert loaded.locate() == Location(source, 1, 1)


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("plait: 1\nname: x\ntasks:\n  - id: a\n    title: [unclosed\n", 5, 12, "close the `[`"),
        ("plait: 1\nname: x\ntasks:\n\t- id: a\n", 4, 1, "tabs"),
        ("plait: 1\nname: x\n  tasks: []\n", 3, 8, "quote a value"),
        ("plait: 1\nname: x\ntasks:\n  - id: a\n   title: t\n", 5, 4, "indentation"),
        ("plait: 1\nname: 'unterminated\n", 2, 7, "close the quote"),
        ("plait: 1\n---\nplait: 1\n", 2, 1, "one plan per file"),
        ("plait: 1\nname: !custom x\n", 2, 7, "remove the `!tag`"),
        ("plait: 1\nname: *nowhere\n", 2, 7, "define the anchor"),
    ],
)
def test_bad_yaml_is_located(tmp_path: Path, text: str, line: int, column: int, words: str) -> None:
    path = write(tmp_path, text)
    err = failure(path)
    assert err.location == Location(str(path), line, column), str(err)
    assert err.message.startswith("invalid YAML")
    assert words in err.fix


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "~\n"])
def test_empty_plan(tmp_path: Path, text: str) -> None:
    err = failure(write(tmp_path, text))
    assert "empty" in err.message and "plait: 1" in err.fix
    assert err.location is not None and err.location.line >= 1


@pytest.mark.parametrize(("text", "kind"), [("- a\n", "a list"), ("just text\n", "text"), ("42\n", "number")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    err = failure(write(tmp_path, text))
    assert "top level" in err.message and kind in err.message


def test_missing_version(tmp_path: Path) -> None:
    err = failure(write(tmp_path, VALID.replace("plait: 1\n", "")))
    assert err.message == "missing the plan format version"
    assert "add `plait: 1`" in err.fix
    assert err.location is not None and (err.location.line, err.location.column) == (1, 1)


@pytest.mark.parametrize("version", ["2", "'1'", "true", "1.0.0"])
def test_unsupported_version(tmp_path: Path, version: str) -> None:
    path = write(tmp_path, VALID.replace("plait: 1", f"plait: {version}"))
    err = failure(path)
    assert err.message.startswith("unsupported plan format version")
    assert "`plait: 1`" in err.fix
    assert err.location == Location(str(path), 1, 1)


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    text = VALID + "  - id: docs\n    title: Docs\n    prompt: Write docs.\n    depends: [ui]\n"
    path = write(tmp_path, text)
    err = failure(path)
    assert err.message == "tasks[2]: unknown key 'depends'"
    assert err.fix == "did you mean 'needs'?"
    assert err.location == Location(str(path), 20, 5)
    assert str(err) == f"{path}:20:5: tasks[2]: unknown key 'depends' — did you mean 'needs'?"


@pytest.mark.parametrize(
    ("old", "new", "message", "fix"),
    [
        ("name: demo", "name: demo\ntask: []", "the plan: unknown key 'task'", "did you mean 'tasks'?"),
        ("    title: Build the UI", "    titel: Build the UI", "tasks[1]: unknown key 'titel'",
         "did you mean 'title'?"),
        ("  verify: make test", "  verfy: make test", "defaults: unknown key 'verfy'",
         "did you mean 'verify'?"),
        ("    prompt: Write the page.", "    prompt: Write the page.\n    description: x",
         "tasks[1]: unknown key 'description'", "did you mean 'prompt'?"),
    ],
)
def test_unknown_keys(tmp_path: Path, old: str, new: str, message: str, fix: str) -> None:
    err = failure(write(tmp_path, VALID.replace(old, new)))
    assert message in [d.message for d in err.diagnostics]
    assert next(d.fix for d in err.diagnostics if d.message == message) == fix


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    err = failure(write(tmp_path, VALID.replace("  verify: make test", "  zzz: 1")))
    assert err.message == "defaults: unknown key 'zzz'"
    assert "agent, verify, timeout, retries" in err.fix


@pytest.mark.parametrize(
    ("old", "new", "message", "fix"),
    [
        ("    title: Build the UI", "    title: [a, b]", "tasks[1].title: expected text, got a list",
         "quoted if it starts with `[`"),
        ("    title: Build the UI", "    title:", "tasks[1].title: expected text, got nothing",
         "give `title` a value"),
        ("    files: [src/api.py]", "    files: src/api.py",
         "tasks[0].files: expected a list, got text 'src/api.py'", "write a list: `[src/api.py]`"),
        ("  - id: api", "  - id: 1.5", "tasks[0].id: expected text, got a number 1.5",
         'quote it so YAML reads it as text: "1.5"'),
        ("    needs: [api]", "    needs: [7]", "tasks[1].needs[0]: expected text, got a number 7", '"7"'),
        ("defaults: {agent: claude,\n  verify: make test}", "defaults: make test", "defaults: expected a mapping",
         "indented"),
        ("    files: [src/api.py]", "    files: [src/api.py]\n    gate: maybe",
         "tasks[0].gate: expected true or false",
         "write true or false"),
    ],
)
def test_wrong_types(tmp_path: Path, old: str, new: str, message: str, fix: str) -> None:
    err = failure(write(tmp_path, VALID.replace(old, new)))
    assert err.message.startswith(message), err.message
    assert fix in err.fix


@pytest.mark.parametrize(
    ("extra", "message"),
    [("estimate: soon", "tasks[0].estimate: 'soon' is not a duration"),
     ("timeout: -5", "tasks[0].timeout: a duration cannot be negative"),
     ("estimate: 2x", "tasks[0].estimate: '2x' is not a duration")],
)
def test_bad_durations(tmp_path: Path, extra: str, message: str) -> None:
    path = write(tmp_path, VALID.replace("    files: [src/api.py]", f"    files: [src/api.py]\n    {extra}"))
    err = failure(path)
    assert err.message == message
    assert "30s, 90m, 1.5h" in err.fix
    assert err.location == Location(str(path), 10, 5)


def test_bad_id(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  - id: api", "  - id: my api!"))
    err = failure(path)
    assert err.message == "tasks[0].id: 'my api!' is not a valid task id"
    assert "`my-api`" in err.fix
    assert err.location == Location(str(path), 6, 5)


def test_overlong_id(tmp_path: Path) -> None:
    err = failure(write(tmp_path, VALID.replace("  - id: api", "  - id: " + "a" * 70)))
    assert "too long" in err.message and "64" in err.fix


def test_missing_required_keys_point_at_the_task(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("    title: Build the UI\n", ""))
    err = failure(path)
    assert err.message == "tasks[1]: missing required key `title`"
    assert err.fix.startswith("add `title:")
    assert err.location == Location(str(path), 10, 5)


def test_no_tasks(tmp_path: Path) -> None:
    err = failure(write(tmp_path, "plait: 1\nname: x\ntasks: []\n"))
    assert err.message == "the plan has no tasks"


def test_unknown_size_and_bad_check(tmp_path: Path) -> None:
    text = VALID.replace("defaults:", "preflight:\n  - run: make\n    tool: make\ndefaults:").replace(
        "    files: [src/api.py]", "    files: [src/api.py]\n    size: XXL")
    err = failure(write(tmp_path, text))
    messages = [d.message for d in err.diagnostics]
    assert "preflight[0]: a preflight check needs exactly one of `run`, `env`, `tool`" in messages
    assert "tasks[0].size: unknown size 'XXL'" in messages


def test_all_errors_are_reported_in_file_order(tmp_path: Path) -> None:
    text = VALID.replace("name: demo", "name: demo\nsurprise: 1")
    text = text.replace("    title: Build the UI", "    title: [x]")
    err = failure(write(tmp_path, text.replace("plait: 1\n", "")))
    lines = [d.location.line for d in err.diagnostics]
    assert len(err.diagnostics) == 3 and lines == sorted(lines)
    assert err.lines() == [str(d) for d in err.diagnostics]


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("name: demo", "name: demo\nname: again"))
    err = failure(path)
    assert err.message == "duplicate key 'name'"
    assert err.location == Location(str(path), 3, 1)


def test_values_yaml_cannot_build_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("name: demo", "name: demo\nbase: 2024-02-30"))
    err = failure(path)
    assert err.location == Location(str(path), 3, 7)
    assert "quote" in err.fix


def test_control_characters(tmp_path: Path) -> None:
    path = write(tmp_path, "plait: 1\nname: a\x01b\n")
    err = failure(path)
    assert err.location == Location(str(path), 2, 8)
    assert "U+0001" in err.message


def test_anchors_and_a_bom_are_fine(tmp_path: Path) -> None:
    text = VALID.replace("    prompt: Write the endpoints.", "    prompt: &p Write the endpoints.").replace(
        "    prompt: Write the page.", "    prompt: *p")
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_plan(path).plan.tasks[1].prompt == "Write the endpoints."


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(info.value) == (f"{path}: no such file — check the path: a plan is a YAML file (plan.yaml) "
                               "or a spectacular plan.md")


def test_a_directory_means_the_plan_inside(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "empty")
    assert info.value.message == "is a directory, not a plan file"
    assert "ccpm epic folder" in info.value.fix
    write(tmp_path, VALID)
    assert load_plan(tmp_path).plan == load_plan(tmp_path / "plan.yaml").plan


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        path = write(tmp_path, VALID)
        path.chmod(0)
        try:
            with pytest.raises(PlanError) as info:
                load_plan(path)
        finally:
            path.chmod(0o644)
        assert "permission denied" in info.value.message and info.value.fix
        return
    # Root reads anything: load the plan as the unprivileged `nobody` instead (setpriv, util-linux).
    folder = Path(tempfile.mkdtemp(prefix="plait-perm-"))
    try:
        folder.chmod(0o755)
        path = write(folder, VALID)
        path.chmod(0)
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                               "-m", "plait", "check", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == (f"plait: error: {path}: cannot be read: permission denied — "
                                       "check the file's permissions")
    finally:
        shutil.rmtree(folder)


def test_other_read_errors(tmp_path: Path) -> None:
    path = write(tmp_path, VALID) / "plan.yaml"
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.message.startswith("cannot be read:") and info.value.fix
    assert str(info.value).startswith(f"{path}: ")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"plait: 1\nname: caf\xe9\n")
    err = failure(path)
    assert err.location == Location(str(path), 2, 10)
    assert "UTF-8" in err.message and "UTF-8" in err.fix


def test_warnings_do_not_raise(tmp_path: Path) -> None:
    loaded = load_plan(write(tmp_path, VALID.replace("  verify: make test}\n", "  }\n").replace(
        "    files: [src/api.py]\n", "    verify: make api\n")))
    messages = [w.message for w in loaded.warnings]
    assert any("'ui' has no verify command" in m for m in messages)
    assert any("'api' declares no files" in m for m in messages)
    assert all(w.severity == "warning" for w in loaded.warnings)


def test_semantic_errors_raise_with_locations(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("    needs: [api]", "    needs: [apj]"))
    err = failure(path)
    assert err.message == "task 'ui' needs 'apj', which is not a task in this plan"
    assert err.fix == "did you mean 'api'?"
    assert err.location == Location(str(path), 13, 13)


def test_a_crafted_duration_is_rejected_at_once(tmp_path: Path) -> None:
    """Spacing that made the old single regular expression backtrack for minutes (2 KB of it: hours)."""
    import time

    crafted = "1" + " " * 2000 + "x"
    started = time.monotonic()
    for value in (crafted, "1 " * 1000 + "h", "9" * 2000 + "m"):
        with pytest.raises(ValueError):
            parse_duration(value)
    assert time.monotonic() - started < 5, "linear parsing takes microseconds; the old regex took hours"
    assert parse_duration("2h 30m") == 9000 and parse_duration("1h1m1s") == 3661
    with pytest.raises(ValueError):
        parse_duration("30m 2h")  # units in order, each once

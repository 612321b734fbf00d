"""spectacular plan.md constructs seen in real plans: each fixture's DAG is asserted edge by edge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plait.errors import Location
from plait.plan.load import LoadedPlan, load_plan
from plait.plan.validate import PlanError

FIXTURES = Path(__file__).parent / "fixtures" / "plans" / "spectacular"


def needs(loaded: LoadedPlan) -> dict[str, list[str]]:
    return {t.id: t.needs for t in loaded.plan.tasks}


def messages(loaded: LoadedPlan) -> list[str]:
    """Warnings about the markdown itself (not the plan-quality warnings every plan may get)."""
    return [w.message for w in loaded.warnings if "script" not in w.message and "verify command" not in w.message
            and "declares no files" not in w.message]


def write(tmp_path: Path, text: str, name: str = "plan.md") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_dependency_ids_in_every_style_of_spectacular_s_skill() -> None:
    loaded = load_plan(FIXTURES / "ids.md")
    assert needs(loaded) == {
        "1": [], "2": [],
        "2.1": ["1", "2"], "2.2": ["1", "2"], "2.3": ["1", "2"], "2.4": ["1", "2"],
        "3.1": ["2.1", "2.2", "2.3", "2.4"], "3.2": ["2.2", "2.3", "2.1", "2.4"]}
    assert messages(loaded) == []
    relaxed = load_plan(FIXTURES / "ids.md", relax_phases=True)
    assert needs(relaxed) == {"1": [], "2": [], "2.1": ["1"], "2.2": ["1", "2"], "2.3": ["1", "2"],
                              "2.4": ["1"], "3.1": ["2.1"], "3.2": ["2.2", "2.3"]}


def test_prose_dependencies_become_edges() -> None:
    loaded = load_plan(FIXTURES / "prose.md")
    assert loaded.plan.name == "Prose Dependencies"
    assert needs(loaded) == {
        "1.1": [], "1.2": [],
        "2.1": ["1.1", "1.2"], "2.2": ["1.1", "1.2"],
        "3.1": ["2.1", "2.2"], "3.2": ["2.2", "2.1"],
        "4.1": ["3.1", "3.2"], "4.2": ["3.1", "3.2"], "4.3": ["3.2", "3.1"],
        "5.1": ["4.2", "4.3", "4.1"], "5.2": ["5.1"]}
    relaxed = load_plan(FIXTURES / "prose.md", relax_phases=True)
    assert needs(relaxed) == {
        "1.1": [], "1.2": [], "2.1": ["1.1", "1.2"], "2.2": ["1.1"], "3.1": ["2.1", "2.2"], "3.2": ["2.2"],
        "4.1": ["3.1", "3.2"], "4.2": ["3.1", "3.2"], "4.3": ["3.2"], "5.1": ["4.2", "4.3"], "5.2": ["5.1"]}


def test_a_task_of_an_earlier_plan_is_one_warning_that_names_it() -> None:
    loaded = load_plan(FIXTURES / "prose.md")
    [found] = [w for w in loaded.warnings if "0.4" in w.message]
    assert found.message == "task 4.3 depends on 'Task 0.4', which is not in this plan; ignored"
    assert "earlier plan" in found.fix and "did you mean" not in found.fix
    assert found.location.line == 45


def test_an_unknown_numeric_id_gets_no_unrelated_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "## Phase 1: A (Parallel)\n### Task 1.1: a\n### Task 1.2: b\n"
                           "**Dependencies**: Task 1.3, because it adds 2 tables and 4 views\n")
    loaded = load_plan(path)
    assert needs(loaded) == {"1.1": [], "1.2": []}
    assert messages(loaded) == ["task 1.2 depends on 'Task 1.3', which is not in this plan; ignored"]
    assert all("did you mean" not in w.fix for w in loaded.warnings)


def test_sizes_take_the_midpoint_and_warn_when_the_letter_disagrees() -> None:
    loaded = load_plan(FIXTURES / "sizes.md")
    got = {t.id: (t.size.value, t.seconds / 3600) for t in loaded.plan.tasks}
    assert got == {"1.1": ("M", 4.0), "1.2": ("L", 6.0), "1.3": ("L", 2.5), "1.4": ("S", 0.75), "1.5": ("L", 7.0)}
    assert messages(loaded) == ["task 1.3: size L is 4–8h but the estimate is 2.5h; using 2.5h"]


@pytest.mark.parametrize(("complexity", "message"), [
    ("XL (12h)", "task '1.1' is size XL, too big for one agent"),
    ("10h", "task '1.1' is size XL, too big for one agent"),
])
def test_only_tasks_over_8h_must_be_split(tmp_path: Path, complexity: str, message: str) -> None:
    path = write(tmp_path, f"## Phase 1: A (Parallel)\n### Task 1.1: a\n**Complexity**: {complexity}\n")
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert caught.value.diagnostics[0].message == message
    assert load_plan(write(tmp_path, "## Phase 1: A (Parallel)\n### Task 1.1: a\n**Complexity**: L (8h)\n"))


def test_the_phase_order_and_a_sequential_strategy_hold_despite_explicit_dependencies() -> None:
    loaded = load_plan(FIXTURES / "phases.md")
    assert needs(loaded) == {"1.1": [], "1.2": ["1.1"], "2.1": ["1.1", "1.2"], "2.2": ["1.2"],
                             "3.1": ["2.2", "2.1"], "3.2": ["2.1", "3.1"]}
    assert loaded.inferred["2.1"] == {"1.2": "phases run in order: Phase 2 after Phase 1"}
    assert loaded.inferred["3.2"] == {"3.1": "Phase 3 is sequential"}
    relaxed = load_plan(FIXTURES / "phases.md", relax_phases=True)
    assert needs(relaxed) == {"1.1": [], "1.2": [], "2.1": ["1.1"], "2.2": ["1.1", "1.2"], "3.1": ["2.2"],
                              "3.2": ["2.1"]}


def test_a_dependency_on_a_later_phase_is_an_error_unless_relaxed(tmp_path: Path) -> None:
    path = write(tmp_path, "## Phase 1: A (Parallel)\n### Task 1.1: a\n**Dependencies**: Task 2.1\n"
                           "## Phase 2: B (Parallel)\n### Task 2.1: b\n**Dependencies**: None\n")
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert str(caught.value.diagnostics[0]).startswith(
        f"{path}:3:24: task 1.1 depends on task 2.1, which comes later in the plan")
    assert needs(load_plan(path, relax_phases=True)) == {"1.1": ["2.1"], "2.1": []}


def test_fields_are_read_only_where_the_format_puts_them() -> None:
    loaded = load_plan(FIXTURES / "body.md")
    assert [t.id for t in loaded.plan.tasks] == ["1.1", "1.2"]  # the breakdown's headings are not tasks
    first, second = loaded.plan.tasks
    assert first.files == ["scripts/install.sh"]
    assert first.verify is None
    assert first.acceptance == ["`scripts/install.sh` installs into a prefix", "running it twice changes nothing"]
    assert "### Task 9.9: not a task" in first.prompt and "# Usage" in first.prompt
    assert "- Strategy: sequential is simpler here" in first.prompt
    assert second.acceptance == ["removes what the installer added"]
    assert needs(loaded) == {"1.1": [], "1.2": []}  # the `Strategy:` inside the steps changed nothing
    assert messages(loaded) == []


def test_a_fence_opened_in_a_list_item_does_not_invert_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, """\
## Phase 1: A (Parallel)
### Task 1.1: a
**Implementation Steps**:
1. Run:
   - ```bash
     # Build
     make
     ```
### Task 1.2: b
**Files**: `b.py`
""")
    loaded = load_plan(path)
    assert [t.id for t in loaded.plan.tasks] == ["1.1", "1.2"]
    assert loaded.plan.tasks[1].files == ["b.py"]


def test_an_unclosed_fence_ends_at_the_next_task_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "## Phase 1: A (Parallel)\n### Task 1.1: a\n```bash\nmake\n"
                           "### Task 1.2: b\n**Files**: `b.py`\n")
    loaded = load_plan(path)
    assert [t.id for t in loaded.plan.tasks] == ["1.1", "1.2"]
    [found] = [w for w in loaded.warnings if "never closed" in w.message]
    assert found.location.line == 3


def test_files_entries_that_are_not_paths_are_ignored_with_a_warning() -> None:
    loaded = load_plan(FIXTURES / "files.md")
    one, two, three = loaded.plan.tasks
    assert one.files == ["src/new_module.py", "src/app.py", "src/plain_path.ts"]
    assert one.reads == ["docs/api.md"]
    assert two.files == []
    assert three.files == ["src/a.py", "src/b.py", "README.md"]
    assert messages(loaded) == [
        "task 1.1: files entry 'All modified files from previous tasks' is not a path: ignored",
        "task 1.1: files entry 'Update all form components' is not a path: ignored",
        "task 1.2: files entry 'None (testing only)' is not a path: ignored"]
    assert all("All" not in f and "None" not in f and "Update" not in f for t in loaded.plan.tasks for f in t.files)


def test_absolute_paths_under_the_repository_become_relative(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    inside, outside = tmp_path / "src" / "a.py", "/etc/passwd"
    path = write(tmp_path, f"## Phase 1: A (Parallel)\n### Task 1.1: a\n**Files**:\n- `{inside}`\n")
    loaded = load_plan(path)
    assert loaded.plan.tasks[0].files == ["src/a.py"]
    assert messages(loaded) == [f"task 1.1: absolute path '{inside}' read as 'src/a.py'"]
    bad = write(tmp_path, f"## Phase 1: A (Parallel)\n### Task 1.1: a\n**Files**:\n- `{outside}`\n", "bad.md")
    with pytest.raises(PlanError) as caught:
        load_plan(bad)
    assert caught.value.diagnostics[0].message == "task 1.1: absolute path '/etc/passwd' is outside the repository"


def test_quality_gates_are_the_task_s_verify_command() -> None:
    one, two = load_plan(FIXTURES / "gates.md").plan.tasks
    assert one.verify == "ruff check src && pytest tests/test_calc.py -q"
    assert two.verify == "pytest tests/test_other.py"


def test_compact_checklist_tasks() -> None:
    loaded = load_plan(FIXTURES / "compact.md")
    assert needs(loaded) == {"1.1": [], "1.2": [], "2.1": ["1.1", "1.2"], "2.2": ["2.1"]}
    one = loaded.plan.tasks[0]
    assert (one.title, one.repo, one.files, one.size.value, one.seconds) == (
        "Add the users table", "backend", ["db/users.sql", "src/users.py"], "M", 3 * 3600.0)


def test_headings_shifted_one_level_up() -> None:
    loaded = load_plan(FIXTURES / "shifted.md")
    assert needs(loaded) == {"1.1": [], "1.2": ["1.1"], "2.1": ["1.2"], "2.2": ["1.2"]}


def test_multi_repo_fields_are_loaded_and_named_in_one_line() -> None:
    loaded = load_plan(FIXTURES / "multirepo.md")
    assert {t.id: t.repo for t in loaded.plan.tasks} == {"1.1": "backend", "2.1": "frontend", "2.2": "backend"}
    assert needs(loaded) == {"1.1": [], "2.1": ["1.1"], "2.2": ["1.1"]}
    assert messages(loaded) == ["this plan spans repositories (backend, frontend): plait runs one repository at a "
                                "time, so `plait run` will refuse it"]


def test_a_split_plan_is_read_through_its_index() -> None:
    loaded = load_plan(FIXTURES / "split" / "README.md")
    assert loaded.plan.name == "Split Plan"
    assert needs(loaded) == {"1.1": [], "1.2": ["1.1"], "2.1": ["1.2"], "2.2": ["1.1", "1.2"]}
    assert loaded.locate("tasks", 3) == Location(str((FIXTURES / "split" / "phase-2.md").resolve()), 8, 1)
    assert needs(load_plan(FIXTURES / "split")) == needs(loaded)  # the folder names its README


def test_every_error_of_a_plan_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """\
## Phase 1: A
**Strategy**: whenever
### Task 1.1: a
**Complexity**: huge
### Task 1.1: b
**Files**: `../outside.py`
""")
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    lines = [(d.location.line, d.message) for d in caught.value.diagnostics]
    assert lines == [
        (2, "unknown strategy 'whenever'"),
        (4, "task 1.1: cannot read the complexity 'huge'"),
        (5, "duplicate task id '1.1' (also tasks[0])"),
        (6, "task '1.1': file '../outside.py' goes outside the repository (`..`)"),
    ]


def test_check_json_prints_an_error_document_for_an_invalid_plan(tmp_path: Path) -> None:
    path = write(tmp_path, "## Phase 1: A (Parallel)\n### Task 1.1: a\n**Complexity**: huge\n")
    done = subprocess.run([sys.executable, "-m", "plait", "check", "--json", str(path)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["valid"] is False and doc["path"] == str(path)
    assert doc["errors"] == [{"severity": "error", "message": "task 1.1: cannot read the complexity 'huge'",
                              "fix": "write S, M or L, optionally with hours, e.g. `M (3h)`",
                              "location": f"{path}:3:17", "file": str(path), "line": 3, "column": 17}]
    assert "Traceback" not in done.stderr


def test_check_shows_what_relaxing_the_phases_would_gain() -> None:
    done = subprocess.run([sys.executable, "-m", "plait", "check", "--json", str(FIXTURES / "phases.md")],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=True)
    doc = json.loads(done.stdout)
    assert doc["format"] == "spectacular"
    assert doc["relax_phases"]["implied_edges_dropped"] == 4
    assert doc["relax_phases"]["critical_path_seconds"] < doc["critical_path_seconds"]


def test_absolute_paths_from_the_author_s_worktree_are_one_warning(tmp_path: Path) -> None:
    files = "\n".join(f"- `/Users/someone/proj/.worktrees/825bce-main/src/{name}.go`" for name in "abc")
    loaded = load_plan(write(tmp_path, f"## Phase 1: A (Parallel)\n### Task 1: a\n**Files**:\n{files}\n"))
    assert loaded.plan.tasks[0].files == ["src/a.go", "src/b.go", "src/c.go"]
    assert messages(loaded) == ["task 1: absolute path '/Users/someone/proj/.worktrees/825bce-main/src/a.go' read "
                                "as 'src/a.go' and 2 more"]


def test_the_steps_after_a_files_list_are_not_files(tmp_path: Path) -> None:
    loaded = load_plan(write(tmp_path, """\
### Task 1: Config

**Files:**
- Modify: `config.go` (struct at `:31-44`)
- Test: `config_test.go`

- [ ] **Step 1: Write the failing tests** — append to `other_test.go`:
- [ ] **Step 2: Run to verify failure**
"""))
    assert loaded.plan.tasks[0].files == ["config.go", "config_test.go"]
    assert messages(loaded) == []


def test_a_split_plan_whose_index_lists_its_phases() -> None:
    loaded = load_plan(FIXTURES / "split-index" / "README.md")
    assert loaded.plan.name == "Migration"
    assert needs(loaded) == {"1": [], "2": ["1"], "3": ["1"]}
    pages, layout = loaded.plan.tasks[1:]
    assert pages.files == ["src/app/(auth)/sign-in/page.tsx", "src/app/__tests__/pages.test.tsx"]
    assert layout.files == ["src/app/layout.tsx"]  # the list nested in a step is part of the step
    assert "src/old/layout.tsx" in layout.prompt
    assert messages(loaded) == []


def test_a_phase_strategy_given_only_in_an_overview_table() -> None:
    loaded = load_plan(FIXTURES / "table-strategy.md")
    assert needs(loaded) == {"1": [], "2": [], "3": ["1", "2"], "4": ["3"]}
    assert messages(loaded) == []

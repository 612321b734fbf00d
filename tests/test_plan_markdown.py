"""spectacular's plan.md in both dialects loads into the same Plan model, with the phase rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from plait.errors import Location
from plait.plan.load import LoadedPlan, PlanError, load_plan
from plait.plan.markdown import parse_markdown

FIXTURES = Path(__file__).parent / "fixtures" / "plans"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.md"
    path.write_text(textwrap.dedent(text))
    return path


def needs(loaded: LoadedPlan) -> dict[str, list[str]]:
    return {t.id: t.needs for t in loaded.plan.tasks}


def failure(path: Path) -> PlanError:
    with pytest.raises(PlanError) as info:
        load_plan(path)
    for line in info.value.lines():
        assert line.startswith(f"{path}:") and " — " in line and "\n" not in line
    return info.value


def test_plugin_dialect() -> None:
    loaded = load_plan(FIXTURES / "plugin.md")
    plan = loaded.plan
    assert plan.name == "Search Index"
    # Phase 1 sequential: chained. Phase 2 parallel: each needs the end of phase 1, 2.2 also what it states.
    # Phase 3 sequential: the first needs all earlier work (2.1 and 2.2 end it); 3.2 lists its own.
    assert needs(loaded) == {"1.1": [], "1.2": ["1.1"], "2.1": ["1.2"], "2.2": ["1.1", "1.2"],
                             "3.1": ["2.1", "2.2"], "3.2": ["3.1", "2.2"]}
    first, second = plan.tasks[0], plan.tasks[1]
    assert (first.title, first.size.value, first.estimate) == ("Schema", "S", 3600.0)
    assert first.files == ["db/search.sql"]
    assert first.acceptance == ["tables exist", "migration is reversible"]
    assert first.prompt == "Create the search tables."
    assert second.files == ["src/search/tokenize.py", "src/search/test_tokenize.py"]
    assert second.estimate == 2.5 * 3600.0  # "2-3 hours": the middle, as spectacular's totals count
    assert second.prompt == "- Split text into words\n- Lower-case and strip accents"
    assert plan.task("2.2").size.value == "L" and plan.task("2.2").estimate == 6 * 3600.0  # L is 5-7h
    assert plan.task("3.1").verify == "test -s docs/search.md"
    assert plan.task("3.2").estimate == 45 * 60.0


def test_mcp_dialect() -> None:
    loaded = load_plan(FIXTURES / "mcp.md")
    assert loaded.plan.name == "Search Index"
    assert needs(loaded) == {"1-1": [], "1-2": ["1-1"], "2-1": ["1-2"], "2-2": ["1-1", "1-2"],
                             "3-1": ["2-1", "2-2"], "3-2": ["3-1", "2-2"]}
    t = loaded.plan.task("1-1")
    assert (t.title, t.size.value, t.estimate, t.files) == ("Schema", "S", 3600.0, ["db/search.sql"])
    assert t.prompt == "- Create the search tables"
    assert loaded.plan.task("1-2").files == ["src/search/tokenize.py", "src/search/test_tokenize.py"]
    assert loaded.plan.task("1-2").estimate == 2.5 * 3600
    assert loaded.plan.task("2-2").files == ["src/search/api.py"]


def test_both_dialects_give_the_same_dag() -> None:
    plugin, mcp = load_plan(FIXTURES / "plugin.md"), load_plan(FIXTURES / "mcp.md")
    assert [t.title for t in plugin.plan.tasks] == [t.title for t in mcp.plan.tasks]
    assert [t.files for t in plugin.plan.tasks] == [t.files for t in mcp.plan.tasks]
    rename = {a.id: b.id for a, b in zip(plugin.plan.tasks, mcp.plan.tasks, strict=True)}
    assert {rename[k]: sorted(rename[d] for d in v) for k, v in needs(plugin).items()} == {
        k: sorted(v) for k, v in needs(mcp).items()}


def test_generated_plans_in_both_dialects() -> None:
    """Plans shaped like the ones spectacular's planners write: summaries, rules, notes, code blocks."""
    plugin, mcp = load_plan(FIXTURES / "plugin-detailed.md"), load_plan(FIXTURES / "mcp-generated.md")
    for loaded in (plugin, mcp):
        assert loaded.plan.name == "API Rate Limits"
        assert needs(loaded) == {"1-1": [], "2-1": ["1-1"], "2-2": ["1-1"]}
        first = loaded.plan.tasks[0]
        assert first.files == ["db/migrations/010_limits.sql", "src/limits/store.py"]
        assert first.acceptance == ["limits survive a restart", "the cache expires after 60 s"]
        assert first.prompt.startswith("Store per-client limits.")
        assert "---" not in first.prompt
    detailed = plugin.plan.tasks[0].prompt
    assert "**Implementation Steps**:" in detailed and "```bash" in detailed
    assert "# ### Task 9-9: not a task" in detailed  # inside a code block: not a heading
    assert plugin.plan.task("2-2").estimate == 3.5 * 3600.0
    admin = mcp.plan.task("2-2")
    assert (admin.size.value, admin.estimate) == ("S", 30 * 60.0)  # XS: an S task of 30 minutes


def test_positions_point_into_the_markdown() -> None:
    loaded = load_plan(FIXTURES / "plugin.md")
    source = str(FIXTURES / "plugin.md")
    text = (FIXTURES / "plugin.md").read_text().splitlines()
    line = text.index("- `src/search/test_tokenize.py` (new)") + 1
    assert loaded.locate("tasks", 1, "files", 1) == Location(source, line, 4)
    assert loaded.locate("tasks", 1) == Location(source, text.index("### Task 1.2: Tokenizer") + 1, 1)
    assert loaded.locate("tasks", 3, "needs", 0).line == text.index("**Dependencies**: Task 1.1") + 1


def test_sequential_and_parallel_phases_without_dependencies(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        # Plan: Rules
        ## Phase 1: A (Sequential)
        ### Task 1-1: a
        ### Task 1-2: b
        ### Task 1-3: c
        ## Phase 2: B (Parallel)
        ### Task 2-1: d
        ### Task 2-2: e
        ## Phase 3: C (Parallel)
        ### Task 3-1: f
        ## Phase 4: D (Sequential)
        ### Task 4-1: g
        ### Task 4-2: h
        """)
    assert needs(load_plan(path)) == {"1-1": [], "1-2": ["1-1"], "1-3": ["1-2"], "2-1": ["1-3"],
                                      "2-2": ["1-3"], "3-1": ["2-1", "2-2"], "4-1": ["3-1"], "4-2": ["4-1"]}


def test_explicit_dependencies_add_to_the_phase_order_and_accept_every_spelling(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        ## Phase 1: A
        **Strategy**: sequential
        ### Task 1.1: a
        ### Task 1.2: b
        **Dependencies**: None
        ### Task 1.3: c
        **Dependencies**: Task 1.1
        ## Phase 2: B
        **Strategy**: parallel
        ### Task 2.1: d
        **Dependencies**: 1-1 and `1.2` (for the schema)
        ### Task 2.2: e
        **Depends on**: Phase 1
        ### Task 2.3: f
        """)
    loaded = load_plan(path)
    assert needs(loaded) == {"1.1": [], "1.2": ["1.1"], "1.3": ["1.1", "1.2"], "2.1": ["1.1", "1.2", "1.3"],
                             "2.2": ["1.1", "1.2", "1.3"], "2.3": ["1.3"]}
    assert needs(load_plan(path, relax_phases=True)) == {
        "1.1": [], "1.2": [], "1.3": ["1.1"], "2.1": ["1.1", "1.2"], "2.2": ["1.1", "1.2", "1.3"],
        "2.3": ["1.2", "1.3"]}
    assert loaded.plan.name == "plan"  # no title: the file name


def test_phase_without_a_strategy_is_sequential_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "## Phase 1: A\n### Task 1.1: a\n### Task 1.2: b\n")
    loaded = load_plan(path)
    assert needs(loaded) == {"1.1": [], "1.2": ["1.1"]}
    warning = next(w for w in loaded.warnings if "Phase 1" in w.message)
    assert warning.location == Location(str(path), 1, 1)
    assert "treating it as sequential" in warning.message and "parallel" in warning.fix


def test_code_fences_are_description_not_structure(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        ## Phase 1: A (Parallel)
        ### Task 1.1: a
        ```markdown
        ### Task 9.9: not a task
        **Files**: nope.py
        ```
        """)
    loaded = load_plan(path)
    assert [t.id for t in loaded.plan.tasks] == ["1.1"]
    assert loaded.plan.tasks[0].files == []
    assert "### Task 9.9: not a task" in loaded.plan.tasks[0].prompt


def test_front_matter_gives_name_and_default_verify(tmp_path: Path) -> None:
    path = write(tmp_path, "---\nfeature: user-auth\nverify: make test\n---\n## Phase 1: A (Parallel)\n"
                           "### Task 1.1: a\n**Files**: `a.py`, b.py\n")
    plan = load_plan(path).plan
    assert plan.name == "user-auth"
    assert plan.defaults.verify == "make test"
    assert plan.tasks[0].files == ["a.py", "b.py"]
    assert plan.tasks[0].prompt == "a"  # no description: the title


@pytest.mark.parametrize(
    ("text", "line", "message", "fix"),
    [
        ("## Phase 1: A (Parallel)\n### Task: Setup\n", 2, "task heading '### Task: Setup' has no id",
         "### Task 1.1: Name"),
        ("## Phase 1: A (Parallel)\n### Task 1.1: a\n## Phase 2: B (Parallel)\n## Phase 3: C (Parallel)\n"
         "### Task 3.1: c\n", 3, "Phase 2 has no tasks", "remove the phase"),
        ("# Title\n\nJust prose.\n", 1, "no tasks found in this markdown plan", "### Task 1.1: Name"),
        ("## Phase 1: A (Parallel)\n### Task 1.1: a\n**Complexity**: huge\n", 3,
         "task 1.1: cannot read the complexity 'huge'", "M (3h)"),
        ("---\nfeature: x\n## Phase 1\n", 1, "the front matter opened by `---` is never closed", "`---`"),
        ("---\nfeature: [x\n---\n## Phase 1\n", 2, "invalid YAML in the front matter", "`---`"),
        ("## Phase 1: A\n**Strategy**: whenever\n### Task 1.1: a\n", 2, "unknown strategy 'whenever'",
         "parallel"),
        ("## Phase 1: A (Parallel)\n### Setup database\n**Files**: a.py\n", 3,
         "`files` given outside any task", "### Task 1.1: Name"),
    ],
)
def test_markdown_errors_are_located(tmp_path: Path, text: str, line: int, message: str, fix: str) -> None:
    path = write(tmp_path, text)
    err = failure(path)
    assert err.message == message
    assert fix in err.fix
    assert err.location is not None and err.location.line == line


def test_model_errors_in_markdown_point_at_the_heading(tmp_path: Path) -> None:
    path = write(tmp_path, "## Phase 1: A (Parallel)\n### Task 1.1: a\n### Task 1.1: b (XL)\n")
    err = failure(path)
    assert [(d.location.line, d.message) for d in err.diagnostics] == [
        (3, "duplicate task id '1.1' (also tasks[0])"), (3, "task '1.1' is size XL, too big for one agent")]


def test_parse_markdown_keeps_positions_for_every_file() -> None:
    md = parse_markdown((FIXTURES / "mcp.md").read_text(), "mcp.md")
    assert md.positions[("tasks", 1, "files", 1)][0] == 13
    assert md.data["tasks"][0]["id"] == "1-1"


AUTH = ["plan.yaml", "plan.plugin.md", "plan.mcp.md"]


def test_auth_example_is_the_same_dag_in_all_three_formats() -> None:
    """The markdown's stated dependencies are the YAML's; its phase order only adds to them."""
    yaml_plan = load_plan(EXAMPLES / "auth" / "plan.yaml").plan
    for name in AUTH[1:]:
        md, phased = (load_plan(EXAMPLES / "auth" / name, relax_phases=relax).plan for relax in (True, False))
        rename = {m.id: y.id for m, y in zip(md.tasks, yaml_plan.tasks, strict=True)}
        for m, p, y in zip(md.tasks, phased.tasks, yaml_plan.tasks, strict=True):
            assert m.title == y.title
            assert m.files == y.files
            assert sorted(rename[d] for d in m.needs) == sorted(y.needs), m.id
            assert set(m.needs) <= set(p.needs), m.id
            assert (m.size, m.seconds) == (y.size, y.seconds), m.id
    context = load_plan(EXAMPLES / "auth" / "plan.plugin.md").plan.task("3.1")
    assert context.needs == ["1.2", "2.1", "2.2", "2.3"]  # Phase 3 starts after Phase 2


def example_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/plan*.*")), ids=example_name)
def test_examples_load_without_errors(path: Path) -> None:
    loaded = load_plan(path)
    if path.suffix == ".yaml":
        assert loaded.warnings == (), [str(w) for w in loaded.warnings]
        assert loaded.plan.contracts and loaded.plan.preflight and loaded.plan.integration.verify
        assert all(t.role and t.acceptance and t.files for t in loaded.plan.tasks)


def test_there_are_three_yaml_examples() -> None:
    names = sorted(p.parent.name for p in EXAMPLES.glob("*/plan.yaml"))
    assert names == ["auth", "shopping-cart", "user-profile"]


def test_an_estimate_that_cannot_be_read_is_a_warning(tmp_path: Path) -> None:
    loaded = load_plan(write(tmp_path, "## Phase 1: A (Parallel)\n### Task 1.1: a (M - soonish)\n"))
    assert loaded.plan.tasks[0].seconds == 4 * 3600.0
    assert any(w.message == "task 1.1: cannot read the estimate 'soonish'; using M (4h)" for w in loaded.warnings)


def test_tasks_without_phases_are_one_sequential_list(tmp_path: Path) -> None:
    loaded = load_plan(write(tmp_path, "# Title\n### Task 1.1: a\n### Task 1.2: b\n"))
    assert needs(loaded) == {"1.1": [], "1.2": ["1.1"]}

"""spec-kit's tasks.md read as plan data: the DAG edge by edge, files, done tasks, errors, and random plans."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.errors import Location
from plait.plan.formats import Parsed, speckit
from plait.plan.formats.speckit import looks_like_speckit, parse_speckit
from plait.plan.model import Plan
from plait.plan.validate import PlanError, validate

FIXTURES = Path(__file__).parent / "fixtures" / "plans" / "speckit"


def read(name: str, relax: bool = False) -> tuple[Parsed, str]:
    path = FIXTURES / name
    return parse_speckit(path.read_text(), str(path), relax_phases=relax), str(path)


def needs(parsed: Parsed) -> dict[str, list[str]]:
    return {t["id"]: t["needs"] for t in parsed.data["tasks"]}


def task(parsed: Parsed, task_id: str) -> dict[str, object]:
    return next(t for t in parsed.data["tasks"] if t["id"] == task_id)


def errors(text: str, source: str = "tasks.md") -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_speckit(text, source)
    return info.value.lines()


def assert_loads(parsed: Parsed, source: str) -> None:
    """The data is a valid plan with no semantic errors (unknown needs, cycles, bad paths)."""
    plan = Plan.model_validate(parsed.data)
    found = validate(plan, lambda *keys: Location(source, 1, 1))
    assert [str(d) for d in found if d.severity == "error"] == []


def test_phases_parallel_groups_and_done_tasks() -> None:
    parsed, source = read("full.md")
    assert parsed.data["name"] == "Bookmark Sync"
    # T001 and T014 are done: not imported, and T015 waits for T013, the open task before T014.
    # T013's written dependencies equal its listed order; T017 adds T009 to its [P] predecessor T016.
    assert needs(parsed) == {
        "T002": [], "T003": ["T002"], "T004": ["T002"],
        "T005": ["T003", "T004"], "T006": ["T005"], "T007": ["T005"], "T008": ["T006", "T007"],
        "T009": ["T008"], "T010": ["T008"], "T011": ["T009", "T010"], "T012": ["T009", "T010"],
        "T013": ["T011", "T012"], "T015": ["T013"],
        "T016": ["T015"], "T017": ["T009", "T016"],
    }
    assert parsed.inferred == {
        "T003": {"T002": "listed order"}, "T004": {"T002": "listed order"},
        "T005": {"T003": "phase order", "T004": "phase order"},
        "T006": {"T005": "listed order"}, "T007": {"T005": "listed order"},
        "T008": {"T006": "[P] group before it", "T007": "[P] group before it"},
        "T009": {"T008": "phase order"}, "T010": {"T008": "phase order"},
        "T011": {"T009": "[P] group before it", "T010": "[P] group before it"},
        "T012": {"T009": "[P] group before it", "T010": "[P] group before it"},
        "T015": {"T013": "listed order"}, "T016": {"T015": "phase order"},
        "T017": {"T016": "[P] group before it"},
    }
    assert parsed.warnings == []
    assert_loads(parsed, source)


def test_relaxed_phases_keep_only_order_within_a_phase() -> None:
    parsed, _ = read("full.md", relax=True)
    assert needs(parsed) == {
        "T002": [], "T003": ["T002"], "T004": ["T002"],
        "T005": [], "T006": ["T005"], "T007": ["T005"], "T008": ["T006", "T007"],
        "T009": [], "T010": [], "T011": ["T009", "T010"], "T012": ["T009", "T010"],
        "T013": ["T011", "T012"], "T015": ["T013"],
        "T016": [], "T017": ["T009", "T016"],
    }
    assert "phase order" not in {r for reasons in parsed.inferred.values() for r in reasons.values()}


def test_files_from_descriptions() -> None:
    parsed, _ = read("full.md")
    files = {t["id"]: t.get("files", []) for t in parsed.data["tasks"]}
    assert files["T002"] == ["pyproject.toml"]
    # `authentication/authorization` is prose; the URL is skipped; `/sync` is a route, not a repository path.
    assert files["T006"] == ["src/bookmarks/auth.py"]
    assert files["T007"] == ["src/bookmarks/api/"]
    assert files["T008"] == ["src/bookmarks/log.py"]
    assert files["T009"] == ["tests/contract/test_sync.py"]
    # Indented lines under a task belong to it.
    assert files["T013"] == ["src/bookmarks/services/sync.py", "src/bookmarks/services/tombstones.py"]
    assert files["T016"] == ["docs/"]
    assert files["T017"] == []


def test_path_rules() -> None:
    text = ("- [ ] T001 Use Node.js and Next.js, see www.example.com/x.py and http://h/a.py, edit ./app/main.ts, "
            "README.md, `config/` and `scripts/build`, not /etc/hosts.conf nor ../up.py nor `npm test`\n")
    assert parse_speckit(text, "t.md").data["tasks"][0]["files"] == [
        "app/main.ts", "README.md", "config/", "scripts/build"]


def test_title_prompt_and_context() -> None:
    parsed, _ = read("full.md")
    t013 = task(parsed, "T013")
    assert t013["title"] == "Implement SyncService in src/bookmarks/services/sync.py"
    assert t013["prompt"] == (
        "Implement SyncService in src/bookmarks/services/sync.py (depends on T011, T012)\n"
        "- merge by last-writer-wins\n- keep tombstones in `src/bookmarks/services/tombstones.py`\n\n"
        "Phase 3: User Story 1 - Sync across devices (Priority: P1) 🎯 MVP\n"
        "Goal: Bookmarks saved on one device appear on the others\n"
        "Independent Test: Save on device A, see it on device B\n"
        "User story: US1")
    assert task(parsed, "T002")["prompt"] == ("Add the sync dependencies to pyproject.toml\n\n"
                                              "Phase 1: Setup (Shared Infrastructure)\n"
                                              "Purpose: Project initialization and basic structure")
    long = parse_speckit("- [ ] T001 " + "word " * 40 + "\n", "t.md").data["tasks"][0]["title"]
    assert len(long) <= 100 and long.endswith("word…")


def test_positions_point_at_ids_and_dependencies() -> None:
    parsed, _ = read("full.md")
    index = [t["id"] for t in parsed.data["tasks"]].index("T017")
    assert parsed.positions[("tasks", index)] == (70, 7)
    assert parsed.positions[("tasks", index, "needs", 0)] == (70, 54)  # the written `T009`
    assert parsed.positions[("tasks", index, "needs", 1)] == (70, 7)  # inferred: the task itself
    assert parsed.positions[("name",)] == (5, 1)


def test_no_phases_and_a_subsection_ends_a_parallel_group() -> None:
    parsed, source = read("flat.md")
    assert parsed.data["name"] == "Flat List"
    assert needs(parsed) == {"T001": [], "T002": [], "T003": ["T001", "T002"], "T004": ["T001", "T002"],
                             "T005": ["T001", "T003", "T004"]}
    assert parsed.inferred["T005"] == {"T003": "[P] group before it", "T004": "[P] group before it"}
    assert_loads(parsed, source)


def test_errors_are_reported_together_with_lines() -> None:
    path = FIXTURES / "errors.md"
    assert errors(path.read_text(), str(path)) == [
        f"{path}:6:35: T002 depends on T010, which is not a task in this file — remove it, or use a task id "
        "from T001 to T003",
        f"{path}:7:7: task T001 is listed twice (also line 5) — give each task its own id",
        f"{path}:11:48: T003 depends on T07, which is not a task in this file — remove it, or use a task id "
        "from T001 to T003",
    ]


def test_nothing_to_run() -> None:
    template = "# Tasks: [FEATURE NAME]\n\n## Phase N: Polish\n\n- [ ] TXXX [P] Documentation updates in docs/\n"
    assert errors(template) == ["tasks.md:1:1: no tasks found — replace the template's `TXXX` placeholders with "
                                "numbered tasks"]
    assert errors("# Notes\n\n- [ ] buy milk\n") == [
        "tasks.md:1:1: no tasks found — spec-kit tasks are lines like `- [ ] T001 Description in path/file.py`"]
    assert errors("- [X] T001 Done\n- [x] T002 Done too\n") == [
        "tasks.md:1:1: every task is already done ([X]) — there is nothing to run"]


def test_huge_parallel_groups_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speckit, "MAX_EDGES", 8)
    text = "".join(f"- [ ] T{i} [P] x\n" for i in range(1, 4)) + "### next\n" + "".join(
        f"- [ ] T{i} [P] x\n" for i in range(4, 8))
    assert errors(text) == ["tasks.md:5:1: the [P] groups up to T4 imply more than 8 dependencies — split large [P] "
                            "groups with a task without [P] (it joins the groups on either side)"]


def test_placeholders_beside_tasks_are_warned_about() -> None:
    parsed = parse_speckit("- [ ] T001 Real work in a.py\n- [ ] TXXX Placeholder\n", "tasks.md")
    assert [str(w) for w in parsed.warnings] == [
        "tasks.md:2:1: a template placeholder (`TXXX`), not a task: skipped — number it like the other tasks "
        "(T001, T002, …)"]


def test_name_falls_back_to_the_spec_folder() -> None:
    parsed = parse_speckit("- [ ] T001 Work\n", "specs/004-bookmark-sync/tasks.md")
    assert parsed.data["name"] == "004-bookmark-sync"


def test_detection() -> None:
    assert looks_like_speckit((FIXTURES / "full.md").read_text())
    assert looks_like_speckit("intro\n  * [x] T12 done thing\n")
    assert not looks_like_speckit("- [ ] TXXX placeholder\n- [ ] buy milk\n## Phase 1\n")
    assert not looks_like_speckit("plait: 1\nname: x\ntasks: []\n")


# --- random plans: write tasks.md from a generated DAG, read it back, compare edge by edge ---------------------


@dataclass
class Gen:
    id: str
    phase: int
    parallel: bool
    done: bool
    new_section: bool  # a `###` heading before it
    deps: list[str]


@st.composite
def plans(draw: st.DrawFn) -> list[Gen]:
    tasks: list[Gen] = []
    for phase in range(draw(st.integers(1, 4))):
        for _ in range(draw(st.integers(0, 6))):
            earlier = [t.id for t in tasks]
            deps = draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True)) if earlier else []
            tasks.append(Gen(f"T{len(tasks) + 1:03d}", phase, draw(st.booleans()), draw(st.integers(0, 3)) == 0,
                             draw(st.integers(0, 4)) == 0, deps))
    return tasks


def render(tasks: list[Gen]) -> str:
    lines = ["# Tasks: Random", "", "Prose that mentions T001 is not a task.", ""]
    for phase in sorted({t.phase for t in tasks}):
        lines += [f"## Phase {phase + 1}: Part {phase + 1}", "", "**Purpose**: work", ""]
        for t in (t for t in tasks if t.phase == phase):
            if t.new_section:
                lines += ["", "### More", ""]
            depends = f" (depends on {', '.join(t.deps)})" if t.deps else ""
            lines.append(f"- [{'X' if t.done else ' '}] {t.id} {'[P] ' if t.parallel else ''}Do {t.id} in "
                         f"src/m{t.id}.py{depends}")
        lines += ["", "- [ ] a checklist item, not a task", ""]
    return "\n".join(lines)


def expected(tasks: list[Gen], relax: bool) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """The DAG the generated plan means, computed from its structure."""
    done = {t.id for t in tasks if t.done}
    edges: dict[str, dict[str, str]] = {t.id: {d: "" for d in t.deps if d not in done} for t in tasks if not t.done}
    phase_end: list[str] = []
    for phase in sorted({t.phase for t in tasks}):
        members = [t for t in tasks if t.phase == phase]
        groups: list[list[Gen]] = []
        for t in members:
            if groups and t.parallel and groups[-1][-1].parallel and not t.new_section:
                groups[-1].append(t)
            else:
                groups.append([t])
        previous = [] if relax else phase_end
        reason = "phase order"
        for group in groups:
            open_ids = [t.id for t in group if not t.done]
            for task_id in open_ids:
                for p in previous:
                    edges[task_id].setdefault(p, reason)
            if open_ids:
                previous, reason = open_ids, "[P] group before it" if group[0].parallel else "listed order"
        open_members = [t.id for t in members if not t.done]
        if open_members:
            phase_end = [m for m in open_members if not any(m in edges[o] for o in open_members)]
    order = [t.id for t in tasks]
    needs = {t: sorted(e, key=order.index) for t, e in edges.items()}
    inferred = {t: {n: r for n, r in e.items() if r} for t, e in edges.items()}
    return needs, {t: r for t, r in inferred.items() if r}


@settings(max_examples=200, deadline=None)
@given(plans(), st.booleans())
def test_random_plans_read_back_as_generated(tasks: list[Gen], relax: bool) -> None:
    text = render(tasks)
    if all(t.done for t in tasks):
        with pytest.raises(PlanError):
            parse_speckit(text, "tasks.md", relax_phases=relax)
        return
    parsed = parse_speckit(text, "tasks.md", relax_phases=relax)
    want_needs, want_inferred = expected(tasks, relax)
    assert needs(parsed) == want_needs
    assert parsed.inferred == want_inferred
    assert {t["id"]: t["files"] for t in parsed.data["tasks"]} == {t: [f"src/m{t}.py"] for t in want_needs}
    assert_loads(parsed, "tasks.md")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*"- [xX]T0123P\n `/.#()<!>~", "depends on ", "## Phase 1\n", "- [ ] T"]))
       .map("".join))
def test_any_text_reads_or_fails_cleanly(text: str) -> None:
    try:
        parsed = parse_speckit(text, "tasks.md")
    except PlanError as exc:
        assert all(line.startswith("tasks.md:") and "\n" not in line for line in exc.lines())
    else:
        assert parsed.data["tasks"]

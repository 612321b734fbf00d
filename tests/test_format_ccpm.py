"""ccpm epic folders read as plait plan data: the DAG edge by edge, fields, errors, hostile input."""

from __future__ import annotations

import itertools
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.errors import Location
from plait.plan.formats import Parsed
from plait.plan.formats.ccpm import looks_like_ccpm, parse_ccpm
from plait.plan.load import load_plan
from plait.plan.model import Plan
from plait.plan.validate import PlanError, validate

FIXTURES = Path(__file__).parent / "fixtures" / "plans" / "ccpm"


def needs(parsed: Parsed) -> dict[str, list[str]]:
    return {t["id"]: t["needs"] for t in parsed.data["tasks"]}


def task(parsed: Parsed, task_id: str) -> dict[str, object]:
    return next(t for t in parsed.data["tasks"] if t["id"] == task_id)


def failure(directory: Path) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_ccpm(directory)
    lines = info.value.lines()
    for line in lines:
        assert line.startswith(str(directory)) and " — " in line and "\n" not in line
    return lines


def write_task(directory: Path, name: str, front: str, body: str = "## Description\nDo it.\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"---\n{textwrap.dedent(front).strip()}\n---\n\n{textwrap.dedent(body)}")
    return path


def test_dashboard_epic() -> None:
    parsed = parse_ccpm(FIXTURES / "dashboard")
    assert parsed.data["plait"] == 1 and parsed.data["name"] == "usage-dashboard"
    # 002 lists the closed 006 (satisfied); 003 writes `2` for 002; 004 and 003 conflict (written on both
    # sides: one edge, later file needs earlier); 005 is `parallel: false` without depends_on.
    assert needs(parsed) == {"001": [], "002": ["001"], "003": ["002"], "004": ["001", "003"], "005": ["004"]}
    assert parsed.inferred == {"004": {"003": "conflicts_with"}, "005": {"004": "parallel: false"}}
    first, api, page, nav, docs = parsed.data["tasks"]
    assert first["files"] == ["db/migrations/0007_usage.sql", "src/models/usage.py"]  # not "Update the …"
    assert first["acceptance"] == ["A migration creates the `usage_daily` table", "The migration can be rolled back",
                                   "Rows are unique per account and day"]
    assert (first["size"], first["estimate"]) == ("S", "3h")
    # Technical Details' backticked paths: not `user.id`, `npm test` or the route `/api/v1/usage`.
    assert api["files"] == ["src/api/usage.py", "src/api/routes.py", "docs/api/"]
    assert (api["size"], api["estimate"]) == ("M", "5h")  # Hours: 4-6, the midpoint
    assert page["files"] == ["web/pages/dashboard.tsx", "web/styles/app.css"]
    assert (page["size"], page["estimate"]) == ("S", "2h")  # XS
    assert nav["files"] == ["web/styles/app.css", "web/components/AccountMenu.tsx"]
    assert (nav["size"], nav["estimate"], nav["acceptance"]) == ("L", "4h", [])  # half a day
    assert docs["files"] == [] and "size" not in docs and "estimate" not in docs  # prose names no file
    assert first["title"] == "Usage table"
    assert first["prompt"].startswith("## Description\nStore one row") and "## Technical Details" in first["prompt"]
    for dropped in ("# Task:", "Acceptance Criteria", "Effort Estimate", "Deployed to staging"):
        assert dropped not in first["prompt"]
    source = str(FIXTURES / "dashboard" / "004.md")
    assert parsed.positions[("tasks", 3, "needs", 0)] == (source, 7, 13)
    assert parsed.positions[("tasks", 3, "needs", 1)] == (source, 9, 18)  # the conflicts_with entry
    assert parsed.positions[("tasks", 3, "estimate")] == (source, 23, 1)
    assert parsed.positions[("tasks", 0, "acceptance", 1)] == (str(FIXTURES / "dashboard" / "001.md"), 19, 1)
    assert parsed.warnings == []
    plan = Plan.model_validate(parsed.data)  # the data is plan format 1, and a valid plan
    assert [d for d in validate(plan, lambda *keys: Location("x")) if d.severity == "error"] == []


def test_synced_epic_uses_issue_numbers() -> None:
    parsed = parse_ccpm(FIXTURES / "synced")
    # 1203 (completed) and 1204 (Done) are skipped; 1205's `"#1202"` names 1202; analysis, mapping and
    # updates/ files are not tasks.
    assert needs(parsed) == {"1201": [], "1202": ["1201"], "1205": ["1202"]}
    assert parsed.data["name"] == "password-reset" and parsed.inferred == {}
    assert task(parsed, "1205")["files"] == ["web/reset/ResetForm.vue", "web/reset/"]
    assert task(parsed, "1202")["estimate"] == "2h"


def test_conflicts_become_a_chain_unless_already_ordered() -> None:
    parsed = parse_ccpm(FIXTURES / "conflicts")
    assert parsed.data["name"] == "conflicts"  # no epic.md: the folder's name
    # 001-003 conflict pairwise: a chain (003 already reaches 001). 004/001: 001 depends on 004 already.
    # 005 and 007: parallel false, no depends_on. 006: parallel false with depends_on. 008/009: 009 is closed.
    assert needs(parsed) == {"001": ["004"], "002": ["001"], "003": ["002"], "004": [], "005": ["004"],
                             "006": ["002"], "007": ["006"], "008": ["007"]}
    assert parsed.inferred == {"002": {"001": "conflicts_with"}, "003": {"002": "conflicts_with"},
                               "005": {"004": "parallel: false"}, "007": {"006": "parallel: false"},
                               "008": {"007": "conflicts_with"}}


def test_renumbered_epic_is_one_error_per_file() -> None:
    d = FIXTURES / "renumbered"
    assert failure(d) == [
        f"{d}/42.md:5:14: `depends_on` names task number 001, but the task files are GitHub issue numbers "
        "(41.md, 42.md, …): the epic was renumbered by epic-sync — re-run `/pm:epic-sync` to rewrite the "
        "references, or write the issue numbers instead (github-mapping.md lists them)",
        f"{d}/43.md:5:18: `depends_on` and `conflicts_with` name task numbers 002, 003, but the task files are "
        "GitHub issue numbers (41.md, 42.md, …): the epic was renumbered by epic-sync — re-run `/pm:epic-sync` "
        "to rewrite the references, or write the issue numbers instead (github-mapping.md lists them)",
    ]


def test_references_renumbered_but_not_the_files(tmp_path: Path) -> None:
    write_task(tmp_path, "001.md", "name: A\ndepends_on: []")
    write_task(tmp_path, "002.md", "name: B\ndepends_on: [1234, 1235]")
    assert failure(tmp_path) == [
        f"{tmp_path}/002.md:3:14: `depends_on` names issue numbers 1234, 1235, but the task files are task "
        "numbers (001.md, 002.md): the references were renumbered and the files were not — re-run "
        "`/pm:epic-sync` to rename the files to their issue numbers, or write task numbers (e.g. 001) instead"]


def test_every_error_at_once() -> None:
    d = FIXTURES / "broken"
    first, *rest = failure(d)
    # The parser's own words differ between libyaml and pure-Python PyYAML; the place and the fix do not.
    assert first.startswith(f"{d}/001.md:4:13: invalid YAML in the front matter: ")
    assert first.endswith(" — close the `[` or `{` opened here")
    assert rest == [
        f"{d}/002.md:4:19: `depends_on` names '009', which is no task file in this epic — did you mean '005'?",
        f"{d}/002.md:5:1: `parallel` is 'maybe', not true or false — write `parallel: true` or `parallel: false`",
        f"{d}/003.md:1:1: has no front matter — start the file with a `---` line, then `name:`, `status:` and "
        "`depends_on:`, then a closing `---` line",
        f"{d}/004.md:1:1: the task has no name — add `name: <short title>` to the front matter",
        f"{d}/004.md:3:1: `depends_on` is not a list of task numbers — write task numbers, e.g. "
        "`depends_on: [001, 002]`",
        f"{d}/005.md:4:14: `depends_on` names 'setup-db', which is no task file in this epic — write task "
        "numbers, e.g. `depends_on: [001, 002]`",
        f"{d}/005.md:6:1: the task has no description — write what to do under `## Description`",
    ]


def test_numbers_are_read_as_written(tmp_path: Path) -> None:
    # YAML 1.1 reads 010 as octal 8: the reader uses the written text, so 010 is 010.md.
    write_task(tmp_path, "008.md", "name: Eight\ndepends_on: []")
    write_task(tmp_path, "010.md", "name: Ten\ndepends_on: []")
    write_task(tmp_path, "011.md", "name: Eleven\ndepends_on: [010]")
    write_task(tmp_path, "012.md", "name: Twelve\ndepends_on: 8, 11")
    write_task(tmp_path, "013.md", "name: Thirteen\ndepends_on:\n  - '#10'\n  - 011.md")
    assert needs(parse_ccpm(tmp_path)) == {"008": [], "010": [], "011": ["010"], "012": ["008", "011"],
                                           "013": ["010", "011"]}


def test_an_ambiguous_number_is_an_error(tmp_path: Path) -> None:
    write_task(tmp_path, "1.md", "name: One\ndepends_on: []")
    write_task(tmp_path, "001.md", "name: Also one\ndepends_on: []")
    write_task(tmp_path, "002.md", "name: Two\ndepends_on: [1, 01]")
    assert failure(tmp_path) == [f"{tmp_path}/002.md:3:17: `depends_on` names '01', which matches 001 and 1.md "
                                 "— write the number exactly as the file is named"]


def test_nothing_to_run(tmp_path: Path) -> None:
    (tmp_path / "epic.md").write_text("---\nname: empty\nstatus: backlog\n---\n")
    assert failure(tmp_path) == [f"{tmp_path}: nothing to run: it has no task files (001.md…) — run "
                                 "`/pm:epic-decompose`"]
    write_task(tmp_path, "001.md", "name: A\nstatus: closed")
    assert failure(tmp_path) == [f"{tmp_path}: nothing to run: every task in it is closed — reopen a task "
                                 "(`status: open`)"]


@pytest.mark.parametrize(("lines", "size", "estimate"), [
    ("- Size: XL\n- Hours: 4-6", "L", "5h"),  # ccpm sizes in days: XL is imported as plait's largest
    ("- **Size:** Large\n- **Hours:** 1.5", "L", "1.5h"),
    ("- Size: small\n- Hours: 2 days", "S", "8h"),  # 16h: scheduled as the 8h a task may take
    ("- Size: M\n- Hours: ~3 hours (with tests)", "M", "3h"),
    ("- Hours: 2 to 3", None, "2.5h"),
])
def test_effort_estimate(tmp_path: Path, lines: str, size: str | None, estimate: str) -> None:
    write_task(tmp_path, "001.md", "name: A", f"## Description\nDo it.\n\n## Effort Estimate\n{lines}\n")
    data = parse_ccpm(tmp_path).data["tasks"][0]
    assert (data.get("size"), data["estimate"]) == (size, estimate)


def test_a_task_over_8h_is_imported_with_a_warning_to_split_it(tmp_path: Path) -> None:
    write_task(tmp_path, "001.md", "name: A", "## Description\nDo it.\n\n## Effort Estimate\n- Size: XL\n"
               "- Hours: 24\n")
    parsed = parse_ccpm(tmp_path)
    assert [w.message for w in parsed.warnings] == [
        "size XL is more than one agent's task (8h); it is scheduled as L",
        "estimated at 24h, more than one agent's task (8h); it is scheduled as 8h"]
    assert all("split" in w.fix for w in parsed.warnings)


def test_unreadable_effort_is_a_warning(tmp_path: Path) -> None:
    write_task(tmp_path, "001.md", "name: A", "## Description\nDo it.\n\n## Effort Estimate\n- Size: huge\n"
               "- Hours: TBD\n")
    parsed = parse_ccpm(tmp_path)
    assert "size" not in parsed.data["tasks"][0] and "estimate" not in parsed.data["tasks"][0]
    assert [str(w) for w in parsed.warnings] == [
        f"{tmp_path}/001.md:9:1: size 'huge' is not XS, S, M, L or XL — write e.g. `- Size: M` and "
        "`- Hours: 4-6`; plait ignores this line",
        f"{tmp_path}/001.md:10:1: hours 'TBD' is not a number of hours — write e.g. `- Size: M` and "
        "`- Hours: 4-6`; plait ignores this line"]


def test_files_rules(tmp_path: Path) -> None:
    write_task(tmp_path, "001.md", "name: Inline", """\
        ## Description
        **Files**: `Makefile`, `src/app.py` (backticked: every span)
        Files to create: src/cli.py, docs/cli.md and the README (words that are paths)
        ## Technical Details
        Touches `src/ignored.py`: an explicit list wins.
        """)
    write_task(tmp_path, "002.md", "name: Code", """\
        ## Technical Details
        ```python
        # `src/in_fence.py`
        ```
        - Globs: `src/auth/**/*.py`; not `**kwargs`, `https://x.test/a.py`, `~/notes.md` or `and/or`
        """)
    files = {t["id"]: t["files"] for t in parse_ccpm(tmp_path).data["tasks"]}
    assert files == {"001": ["Makefile", "src/app.py", "src/cli.py", "docs/cli.md"], "002": ["src/auth/**/*.py"]}


def test_looks_like_ccpm(tmp_path: Path) -> None:
    for name in ("dashboard", "synced", "conflicts", "renumbered", "broken"):
        assert looks_like_ccpm(FIXTURES / name)
    assert not looks_like_ccpm(tmp_path)
    assert not looks_like_ccpm(tmp_path / "missing")
    (tmp_path / "notes.md").write_text("---\nname: x\n---\n")
    (tmp_path / "001.md").write_text("# Plain markdown\n\nname: not front matter\n")
    assert not looks_like_ccpm(tmp_path)
    assert not looks_like_ccpm(tmp_path / "001.md")
    write_task(tmp_path / "epic", "001.md", "parallel: true")
    assert looks_like_ccpm(tmp_path / "epic")


def test_folder_problems(tmp_path: Path) -> None:
    assert failure(tmp_path / "missing") == [f"{tmp_path}/missing: no such folder — give the path of a ccpm "
                                             "epic folder: it holds epic.md and the numbered task files"]
    (tmp_path / "file").write_text("x")
    assert failure(tmp_path / "file")[0].startswith(f"{tmp_path}/file: is a file, not an epic folder")


def test_size_limits(tmp_path: Path) -> None:
    (tmp_path / "001.md").write_text("---\nname: A\n" + "k: v\n" * 5000 + "---\n")
    (tmp_path / "002.md").write_text("---\nname: B\n---\n" + "x" * (1 << 20))
    assert failure(tmp_path) == [
        f"{tmp_path}/001.md:1:1: front matter is over 16 KiB — keep only ccpm's keys in it (name, status, "
        "depends_on…): the task text goes below the closing `---`",
        f"{tmp_path}/002.md: is over 1 MiB, too large for a task file — shorten it"]


def test_load_plan_reads_the_epic_from_its_folder_or_a_task_file() -> None:
    for path in (FIXTURES / "dashboard", FIXTURES / "dashboard" / "003.md"):
        loaded = load_plan(path)
        assert [t.id for t in loaded.plan.tasks] == ["001", "002", "003", "004", "005"]
        assert loaded.plan.task("004").needs == ["001", "003"]


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "001.md").write_bytes(b"---\nname: caf\xe9\n---\n")
    assert failure(tmp_path) == [f"{tmp_path}/001.md:2:10: is not UTF-8 text (byte 0xe9) — save the file as UTF-8"]


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_task(tmp_path, "001.md", "name: A")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads the file whatever its mode: only here, make opening it fail as it would
        real_open = Path.open

        def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self == path:
                raise PermissionError(13, "Permission denied")
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    try:
        assert failure(tmp_path) == [f"{tmp_path}/001.md: cannot be read: Permission denied — check the file's "
                                     "permissions"]
    finally:
        path.chmod(0o644)


HOSTILE = [
    "---\na: &a [1, 1, 1, 1]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\ndepends_on: [*c, *c]\n---\n",
    "---\nname: " + "[" * 5000 + "\n---\n",
    "---\nname: x\n" + "k: v\n" * 20000 + "---\n",
    "---\nname:\tx\ndepends_on: [1]\n---\n",
    "---\nname: x\x00\n---\n",
    "---\nname: x\ncreated: 2024-02-30T10:00:00Z\nparallel: !!python/object:os.system x\n---\n## Description\nok\n",
    "---\n- a\n- b\n---\n",
    "---\nname: x\n",
    "---\nname: x\nname: y\n---\n",
    "---\n---\n",
    "",
    "\ufeff---\nname: [x]\nstatus: {a: 1}\nparallel: [true]\nconflicts_with: [[001]]\n---\n",
    '---\nname: "a\\nb"\nparallel: "x\\ny"\ndepends_on: ["1\\n2", "\\u2028"]\n---\n## Description\nx\n',
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_front_matter_is_an_error_not_a_crash(tmp_path: Path, text: str) -> None:
    (tmp_path / "001.md").write_text(text)
    try:
        parse_ccpm(tmp_path)
    except PlanError as exc:
        assert all(line.startswith(f"{tmp_path}/001.md:") and "\n" not in line for line in exc.lines())


def test_long_hostile_lines_are_read_in_linear_time(tmp_path: Path) -> None:
    # Each line would backtrack for minutes under a pattern with adjacent quantifiers (`\s*#*\s*$`, `.*?\s*$`).
    spaces = " " * 20000
    lines = [f"#{spaces}x", f"## Effort Estimate{spaces}!", f"- Hours:{spaces}1{spaces}-{spaces}2{spaces}h!",
             f"- Size:{spaces}M{spaces}", f"- [ ]{spaces}", f"**Files**{spaces}x", f"Files to{spaces}x{spaces}",
             f"1.{spaces}-{spaces}x", "`" * 20000, "." * 20000 + "py"]
    write_task(tmp_path, "001.md", "name: A", "## Description\nDo it.\n" + "\n".join(lines) + "\n")
    assert parse_ccpm(tmp_path).data["tasks"][0]["id"] == "001"


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode), st.booleans())
def test_any_bytes_parse_or_fail_cleanly(tmp_path: Path, raw: bytes, closed: bool) -> None:
    (tmp_path / "001.md").write_bytes(b"---\nname: x\n" + raw + (b"\n---\n## Description\nx\n" if closed else b""))
    try:
        parse_ccpm(tmp_path)
    except PlanError as exc:
        assert all(line.startswith(f"{tmp_path}/001.md") and "\n" not in line for line in exc.lines())


@st.composite
def epics(draw: st.DrawFn) -> tuple[list[str], list[dict[str, object]]]:
    n = draw(st.integers(1, 9))
    if draw(st.booleans()):
        ids = [f"{i + 1:03d}" for i in range(n)]
    else:
        ids = [str(x) for x in sorted(draw(st.sets(st.integers(100, 99999), min_size=n, max_size=n)))]
    tasks = []
    for i in range(n):
        tasks.append({
            "deps": sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [],
            "conflicts": sorted(draw(st.sets(st.integers(0, n - 1), max_size=2))),
            "closed": draw(st.booleans()) and draw(st.booleans()),
            "parallel": draw(st.booleans()),
            "style": draw(st.sampled_from(["flow", "block", "text"])),
            "unpadded": draw(st.booleans()),
        })
    return ids, tasks


def expected_needs(tasks: list[dict[str, object]]) -> dict[int, list[int]]:
    """The ccpm rules, computed on indices with a naive transitive closure."""
    closed = {i for i, t in enumerate(tasks) if t["closed"]}
    open_ = [i for i in range(len(tasks)) if i not in closed]
    result = {i: [d for d in tasks[i]["deps"] if d not in closed] for i in open_}  # type: ignore[attr-defined]
    pairs: dict[tuple[int, int], None] = {}
    for i in open_:
        for c in tasks[i]["conflicts"]:  # type: ignore[attr-defined]
            if c != i and c not in closed:
                pairs[(max(i, c), min(i, c))] = None
    for before, i in itertools.pairwise(open_):
        if not tasks[i]["parallel"] and not tasks[i]["deps"]:
            pairs.setdefault((i, before))

    def reaches(a: int, b: int) -> bool:
        return any(d == b or reaches(d, b) for d in result[a])

    for late, early in sorted(pairs, key=lambda p: (p[0], -p[1])):
        if not reaches(late, early) and not reaches(early, late):
            result[late].append(early)
    return result


def ref_list(refs: list[str], style: object) -> str:
    if style == "flow":
        return f"[{', '.join(refs)}]"
    if style == "block" and refs:
        return "".join(f"\n  - {r}" for r in refs)
    return ", ".join(refs)


def write_epic(folder: Path, ids: list[str], tasks: list[dict[str, object]]) -> None:
    def ref(i: int, unpadded: object) -> str:
        return ids[i].lstrip("0") if unpadded else ids[i]

    for t_id, t in zip(ids, tasks, strict=True):
        deps = [ref(d, t["unpadded"]) for d in t["deps"]]  # type: ignore[attr-defined]
        conflicts = [ref(c, t["unpadded"]) for c in t["conflicts"]]  # type: ignore[attr-defined]
        write_task(folder, f"{t_id}.md", f"name: Task {t_id}\nstatus: {'closed' if t['closed'] else 'open'}\n"
                   f"depends_on: {ref_list(deps, t['style'])}\nparallel: {str(t['parallel']).lower()}\n"
                   f"conflicts_with: {ref_list(conflicts, t['style'])}")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(epics())
def test_random_epics_give_the_expected_dag(tmp_path_factory: pytest.TempPathFactory,
                                           epic: tuple[list[str], list[dict[str, object]]]) -> None:
    ids, tasks = epic
    folder = tmp_path_factory.mktemp("epic")
    write_epic(folder, ids, tasks)
    if all(t["closed"] for t in tasks):
        with pytest.raises(PlanError):
            parse_ccpm(folder)
        return
    parsed = parse_ccpm(folder)
    assert needs(parsed) == {ids[i]: [ids[d] for d in ds] for i, ds in expected_needs(tasks).items()}
    for t_id, deps in parsed.inferred.items():
        assert set(deps) <= set(needs(parsed)[t_id])
        assert set(deps.values()) <= {"conflicts_with", "parallel: false"}

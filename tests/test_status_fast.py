"""`plait status` stays cheap while a run is live: plain one-line JSON off a terminal, no pydantic or rich
imported, the metrics from the run's summary (kept by `Store.emit`) instead of every event, and the
repository found without running git. Runs, git and SQLite are real; FakeAgent plays the agents."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plait import api, measure, report, status
from plait.agents.base import ErrorKind
from plait.errors import PlaitError
from plait.git.repo import Git
from plait.run import liveness
from plait.run.engine import RunOptions
from plait.state import EventKind, Store, db_path
from plait.testing import FakeAgent, VirtualClock
from plait.testing.fake import edits, failure, rate_limited
from runfixtures import git, make_repo, task, write_plan

# `python -m plait ARGS`, then the heavy packages it imported, as the last line on stderr
# `plait ARGS` as the installed command runs it (pip's console script), saying which of the modules a status read
# must not need it imported
PROBE = """import re, sys
from plait.entry import main
sys.argv = ['plait', *sys.argv[1:]]
try:
    main()
finally:
    print(sorted(m for m in ('pydantic', 'rich', 'plait.plan.model', 'click', 'subprocess', 'logging', 'dataclasses',
                             'pathlib', 'typing', 'threading') if m in sys.modules), file=sys.stderr)
"""


def mixed_runs(tmp_path: Path) -> tuple[list[str], api.Repo]:
    """Two finished runs: one with a retry and a conflict resolved at integration, one with a failed task and
    the task it blocked."""
    repo = make_repo(tmp_path / "repo", {"README.md": "x\n", "shared.txt": "base\n"})
    fake = FakeAgent({"a": [edits({"shared.txt": "alpha\n"})], "b": [edits({"shared.txt": "beta\n"})],
                      "c": [rate_limited(retry_after=5), edits({"c.txt": "c\n"})],
                      "d": [failure(ErrorKind.AUTH, "401 invalid api key")]},
                     roles={"resolver": {"b": [edits({"shared.txt": "alpha\nbeta\n"}, cost=0.5)]}})
    plans = [[task("a", {"shared.txt": "alpha\n"}), task("b", {"shared.txt": "beta\n"}), task("c", {"c.txt": "c\n"})],
             [task("d", {"d.txt": "d\n"}), task("e", {"e.txt": "e\n"}, needs=["d"])]]
    ids = []
    for i, tasks in enumerate(plans):
        plan = write_plan(repo, tasks, name=f"plan{i}.yaml", defaults={"agent": "claude", "retries": 2})
        handle, run_id = api.start(plan, RunOptions(jobs=2), cwd=repo)
        api.execute(handle, run_id, make_agent=lambda profile: fake, clock=VirtualClock())
        ids.append(run_id)
    return ids, handle


def old_spans(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """How the report found each process's span before the summary: a pass over every event."""
    spans: list[tuple[float, float]] = []
    for e in events:
        if e["kind"] == EventKind.RUN_STARTED:
            spans.append((e["ts"], e["ts"]))
        elif spans and e["kind"] not in (EventKind.TASK_RESET, EventKind.REHEARSAL_SERVER,
                                         EventKind.RUN_CANCEL_REQUESTED, EventKind.RUN_CANCELLED):
            spans[-1] = (spans[-1][0], max(spans[-1][1], e["ts"]))
    return spans


def test_the_summary_gives_the_figures_the_events_give_across_retries_conflicts_and_failures(
        tmp_path: Path) -> None:
    ids, repo = mixed_runs(tmp_path)
    store = repo.store
    for run_id in ids:
        row, tasks, attempts = store.run(run_id), store.tasks(run_id), store.attempts(run_id)
        events = store.events(run_id)
        assert row is not None
        summary = store.summary(run_id)
        from_summary = report.compute(row, tasks, attempts, summary=summary)
        assert from_summary == report.compute(row, tasks, attempts, events)
        assert from_summary.retries == sum(1 for e in events if e["kind"] == EventKind.TASK_RETRY)
        assert from_summary.conflicts == sum(1 for e in events if e["kind"] == EventKind.TASK_CONFLICT)
        assert from_summary.integration_agents == [line for _, line in measure.integration_lines(events)]
        assert from_summary.why == next(str(e["data"].get("why") or "") for e in reversed(events)
                                        if e["kind"] == EventKind.RUN_FINISHED)
        assert [tuple(s) for s in summary["spans"]] == old_spans(events)
        doc = api.status(run_id, cwd=repo.root)
        assert doc["output"] == f"{events[-1]['kind']} {events[-1]['task_id'] or ''}".strip()
        assert doc["metrics"] == report.asdict(from_summary)
    first, second = (report.compute(store.run(i) or {}, store.tasks(i), store.attempts(i), summary=store.summary(i))
                     for i in ids)
    assert first.retries == 1 and first.conflicts == 1 and len(first.integration_agents) == 1
    assert second.failed == ["d"] and second.blocked == ["e"]


def test_a_run_recorded_before_summaries_gets_one_from_its_events(tmp_path: Path) -> None:
    (run_id, _), repo = mixed_runs(tmp_path)
    kept = repo.store.summary(run_id)
    db = sqlite3.connect(repo.store.path)
    db.execute("UPDATE runs SET summary_json=NULL WHERE id=?", (run_id,))
    db.commit()
    db.close()
    assert repo.store.summary(run_id) == kept
    repo.store.emit(run_id, EventKind.RUN_CANCELLED, None, {"why": "test"})
    again = Store(repo.store.path)
    assert again.summary(run_id) == {**kept, "last": "run.cancelled"}
    assert json.loads(again.run(run_id)["summary_json"])["last"] == "run.cancelled"  # type: ignore[index]


def test_a_run_recorded_before_its_task_graph_was_kept_reads_the_same(tmp_path: Path) -> None:
    ids, repo = mixed_runs(tmp_path)
    kept = {i: api.status(i, cwd=repo.root) for i in ids}
    graph = json.loads((repo.store.run(ids[1]) or {})["graph_json"])
    assert graph["needs"] == {"d": [], "e": ["d"]} and graph["levels"] == {"d": 0, "e": 1} and graph["gates"] == []
    db = sqlite3.connect(repo.store.path)
    db.execute("UPDATE runs SET graph_json=NULL")
    db.commit()
    db.close()
    assert {i: api.status(i, cwd=repo.root) for i in ids} == kept


def test_a_database_of_the_plait_before_moves_its_plans_out_of_the_runs_rows(tmp_path: Path) -> None:
    ids, repo = mixed_runs(tmp_path)
    kept = {i: (api.status(i, cwd=repo.root), repo.store.run(i)) for i in ids}
    assert all(row and row["plan_json"] and row["graph_json"] for _, row in kept.values())
    db = sqlite3.connect(repo.store.path)  # as plait left it before schema 6: the plan in the run's row
    db.execute("UPDATE runs SET plan_json=(SELECT plan_json FROM plans WHERE run_id=runs.id)")
    db.execute("DROP TABLE plans")
    db.execute("ALTER TABLE runs DROP COLUMN graph_json")
    db.execute("DELETE FROM migrations WHERE version=6")
    db.commit()
    assert {i: api.status(i, cwd=repo.root) for i in ids} == {i: doc for i, (doc, _) in kept.items()}, \
        "read by this plait before anything migrated it"
    store = Store(repo.store.path)
    assert {i: api.status(i, cwd=repo.root) for i in ids} == {i: doc for i, (doc, _) in kept.items()}
    for i, (_, row) in kept.items():
        assert {**(store.run(i) or {}), "graph_json": row["graph_json"]} == row  # type: ignore[index]
    assert db.execute("SELECT count(*) FROM runs WHERE plan_json IS NOT NULL").fetchone() == (0,)
    db.close()


def test_the_document_kept_ready_is_answered_only_while_nothing_it_was_made_from_changed(tmp_path: Path) -> None:
    (first, second), repo = mixed_runs(tmp_path)
    ready = repo.git.common_dir / "plait" / status.READY_FILE

    def answer(run_id: str) -> dict[str, Any]:
        doc = json.loads(status.document_json(run_id, repo.root))
        assert doc == api.status(run_id, cwd=repo.root), "the same document as built from the rows"
        return doc

    assert answer(second)["status"] == "failed" and ready.is_file()
    key, text = ready.read_text().splitlines()
    ready.write_text(f"{key}\n{text.replace('failed', 'FORGED')}\n")
    assert status.document_json(second, repo.root) == text.replace("failed", "FORGED"), "answered, unbuilt"
    assert answer(first)["run_id"] == first, "another run: built again"
    repo.store.emit(first, EventKind.RUN_STARTED, None, {}, run={"status": "running"})  # a new event
    assert answer(first)["status"] == "interrupted", "running, but no process holds it"
    with liveness.RunLock(liveness.lock_path(repo.git.common_dir, first)):  # a process takes it: no new event
        assert answer(first)["status"] == "running"
    assert answer(first)["status"] == "interrupted"
    merged = repo.root / ".plait" / "runs" / first / status.MERGED_FILE
    merged.write_text(json.dumps({"phase": "changed", "integration_concerns": []}))
    assert answer(first)["merged_context"]["phase"] == "changed"
    other = repo.root.parent / "other"  # a linked work tree of the same repository: its own evidence folder
    git(repo.root, "worktree", "add", "-q", str(other))
    doc = json.loads(status.document_json(first, other))
    assert doc["evidence"] == str(other.resolve() / ".plait" / "runs" / first)
    ready.write_text("garbage")
    assert answer(first)["status"] == "interrupted"
    ready.unlink()
    ready.mkdir()  # where it cannot be kept, it is only not kept
    assert answer(first)["status"] == "interrupted" and ready.is_dir()
    assert sorted(p.name for p in ready.parent.iterdir() if p.name.startswith(status.READY_FILE)) == [ready.name]


def test_status_json_off_a_terminal_is_one_line_of_plain_json_without_pydantic_or_rich(tmp_path: Path) -> None:
    (_, run_id), repo = mixed_runs(tmp_path)
    done = subprocess.run([sys.executable, "-c", PROBE, "status", "--json"], cwd=repo.root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "\x1b" not in done.stdout
    assert json.loads(done.stdout) == api.status(run_id, cwd=repo.root)
    assert done.stderr.strip().splitlines()[-1] == "[]", \
        "no command-line framework, nothing that runs processes, none of Python's slower common modules"
    text = subprocess.run([sys.executable, "-c", PROBE, "status", run_id], cwd=repo.root, capture_output=True,
                          text=True, timeout=120)
    assert text.returncode == 0 and f"run {run_id} failed" in text.stdout and "d" in text.stdout
    assert "'rich'" in text.stderr.strip().splitlines()[-1], "the table needs rich"
    assert "plan.model" not in text.stderr, "and nothing of the plan model"


@pytest.mark.parametrize("args", [("status", "{run}", "--json"), ("status", "--json", "{run}")])
def test_status_json_of_a_named_run_takes_the_quick_way_too(tmp_path: Path, args: tuple[str, ...]) -> None:
    (first, _), repo = mixed_runs(tmp_path)
    done = subprocess.run([sys.executable, "-c", PROBE, *(a.format(run=first) for a in args)], cwd=repo.root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == api.status(first, cwd=repo.root)
    assert "click" not in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("args", "said"), [
    (("status", "nosuch", "--json"), "plait: error: no run 'nosuch' in this repository"),
    (("status", "--json", "--bogus"), "plait: error: No such option '--bogus'"),
    (("status", "a", "b", "--json"), "plait: error: Got unexpected extra argument (b)"),
])
def test_status_json_mistakes_are_one_line_and_exit_1(tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    _, repo = mixed_runs(tmp_path)
    done = subprocess.run([sys.executable, "-m", "plait", *args], cwd=repo.root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(said) and done.stderr.count("\n") == 1, done.stderr


def test_status_json_outside_a_repository_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "plait", "status", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "not inside a git repository" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [("--help",), ("status", "--help")])
def test_help_imports_neither_pydantic_nor_rich(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    imported = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 0 and "click" in imported and "pydantic" not in imported and "rich" not in imported


def test_the_repository_is_found_without_git_as_git_finds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "sub" / "deeper").mkdir(parents=True)
    git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "linked"))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # ignored by both, as plait's git ignores it
    for where in (repo, repo / "sub" / "deeper", tmp_path / "linked"):
        found, known = Git.find(where), Git.discover(where)
        assert (found.root, found.common_dir, found.git_dir) == (known.root, known.common_dir, known.git_dir)
    assert Git.find(tmp_path / "linked").git_dir != Git.find(repo).git_dir
    assert db_path(Git.find(tmp_path / "linked").common_dir) == db_path(Git.find(repo).common_dir)


def test_inside_git_dir_or_a_bare_repository_is_left_to_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    for where in (repo / ".git", bare):
        with pytest.raises(PlaitError, match=r"no working tree|not inside a git repository"):
            Git.find(where)


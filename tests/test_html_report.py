"""The HTML report: real runs rendered in headless Chromium (no console errors, one graph node per task, one
timeline bar per attempt), and fast tests of the layout, the analysis and escaping."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from browser import attempt_count, browser, watch_errors
from plait import html_report, report
from runfixtures import latest_run, make_repo, plait, task, write_plan

__all__ = ["browser"]  # the fixture, imported for the tests below

HOSTILE = '<script>window.pwned = 1</script> & "quoted" <img src=x onerror="window.pwned = 2">'


def open_report(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page()
    errors = watch_errors(page)
    page.goto(path.as_uri())
    page.wait_for_selector("svg.gantt")
    return page, errors


def check_rendered(browser: Any, repo: Path, run_id: str, tasks: int) -> Any:
    path = repo / ".plait" / "runs" / run_id / "report.html"
    assert path.is_file(), "the run did not write report.html"
    page, errors = open_report(browser, path)
    assert page.locator("svg.dag g.node").count() == tasks
    assert page.locator("svg.gantt rect.attempt").count() == attempt_count(repo, run_id)
    assert page.evaluate("document.scripts.length") == 0
    assert page.evaluate("window.pwned") is None
    assert errors == []
    return page


def test_a_completed_run_renders_its_graph_and_timeline(browser: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"}, delay="0.2s", title=HOSTILE),
                             task("b", {"b.txt": "b\n"}, delay="0.2s"),
                             task("c", {"c.txt": "c\n"}, needs=["a", "b"]),
                             task("d", {"d.txt": "d\n"}, needs=["c"]),
                             task("e", {"e.txt": "e\n"}, needs=["a"])])
    done = plait(repo, "run", str(plan), "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = latest_run(repo)
    page = check_rendered(browser, repo, run_id, tasks=5)
    assert page.locator("svg.dag g.node.s-done").count() == 5
    assert page.locator("svg.dag g.node.critical").count() >= 3  # a or b, then c, then d
    assert HOSTILE in page.locator('g.node[data-task="a"] title').text_content()
    assert page.locator('a[href="tasks/a/EVIDENCE.md"]').count() >= 1
    assert page.locator("table.analysis").is_visible()

    again = plait(repo, "report", run_id)
    assert again.returncode == 0 and again.stdout.strip().endswith("report.html"), again.stderr


def test_a_failed_run_shows_the_failure_and_what_it_blocked(browser: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"}),
                             task("b", {"b.txt": "b\n"}, script={"write": {"b.txt": "b\n"}, "fail": True}),
                             task("c", {"c.txt": "c\n"}, needs=["b"])])
    done = plait(repo, "run", str(plan))
    assert done.returncode == 1, done.stdout + done.stderr
    page = check_rendered(browser, repo, latest_run(repo), tasks=3)
    assert page.locator('g.node.s-failed[data-task="b"]').count() == 1
    assert page.locator('g.node.s-blocked[data-task="c"]').count() == 1


def test_a_resumed_run_shows_every_attempt_of_both_processes(browser: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    gate = tmp_path / "gate"  # b fails until it exists
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"}),
                             task("b", {"b.txt": "b\n"}, needs=["a"],
                                  script={"write": {"b.txt": "b\n"}, "run": [f"test -f '{gate}'"]})])
    assert plait(repo, "run", str(plan)).returncode == 1
    run_id = latest_run(repo)
    gate.write_text("")
    done = plait(repo, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert attempt_count(repo, run_id) >= 3  # a once, b in each process
    page = check_rendered(browser, repo, run_id, tasks=2)
    assert page.locator("svg.dag g.node.s-done").count() == 2


# -- fast tests: no run, no browser ------------------------------------------------------------------------

def test_layout_puts_levels_left_to_right_without_overlaps() -> None:
    needs = {"a": [], "b": [], "c": ["a"], "d": ["a", "b"], "e": ["c", "d"], "f": [], "g": ["e", "f"], "h": ["b"]}
    at = html_report.layout(needs)
    assert set(at) == set(needs)
    for node, deps in needs.items():
        for dep in deps:
            assert at[dep][0] + html_report.NODE_W <= at[node][0], (dep, node)
    for (n1, (x1, y1)), (n2, (x2, y2)) in itertools.combinations(at.items(), 2):
        apart = (abs(x1 - x2) >= html_report.NODE_W) or (abs(y1 - y2) >= html_report.NODE_H)
        assert apart, (n1, n2)


def record(title: str = "t", events: list[dict[str, Any]] | None = None,
           attempts: list[dict[str, Any]] | None = None) -> html_report.RunRecord:
    plan = {"tasks": [{"id": "a"}, {"id": "b", "needs": ["a"]}]}
    run = {"id": "r1", "status": "completed", "jobs": 2, "plan_json": json.dumps(plan), "plan_name": "p",
           "plan_path": "plan.yaml", "options_json": "{}"}
    tasks = [{"task_id": t, "title": title, "state": "done", "attempt": 1, "error": None, "cost_usd": None,
              "tokens_in": 0, "tokens_out": 0, "deviations_json": "[]", "incidents_json": "[]",
              "conflicts_json": "[]"} for t in ("a", "b")]
    return html_report.RunRecord(run, tasks, attempts or [], events or [])


def test_untrusted_text_is_escaped() -> None:
    html = html_report.page(record(title=HOSTILE))
    assert "<script>window" not in html and "<img" not in html
    assert "&lt;script&gt;window.pwned" in html


def test_overhead_is_process_time_no_attempt_covers() -> None:
    def ev(ts: float, kind: str, **data: Any) -> dict[str, Any]:
        return {"ts": ts, "kind": kind, "task_id": data.pop("task_id", None), "data": data}

    attempts = [{"task_id": "a", "attempt": 1, "started_at": 1.0, "finished_at": 5.0, "outcome": "verified"},
                {"task_id": "b", "attempt": 1, "started_at": 2.0, "finished_at": 8.0, "outcome": "verified"}]
    events = [ev(0.0, "run.started"), ev(8.0, "integration.started"), ev(8.5, "integration.conflict", task="b"),
              ev(9.5, "integration.resolved", task="b", ok=True), ev(10.0, "run.finished")]
    rec = record(events=events, attempts=attempts)
    m = report.compute(rec.run, rec.tasks, rec.attempts, rec.events)
    a = html_report.analyse(rec, m)
    assert a.overhead_seconds == pytest.approx(10.0 - 7.0)  # 0-1 start-up, 8-10 integration
    assert a.conflicts == [("b", pytest.approx(1.0))]
    saved = m.task_seconds - m.wall_seconds
    assert a.roi == pytest.approx((saved - 3.0) / 3.0)
    bars, lanes = html_report.bars(rec)
    assert [b.kind for b in bars].count("attempt") == 2 and lanes[-1] == "integration"


def test_the_demo_run_renders(browser: Any, tmp_path: Path) -> None:
    """The README's main job, `plait demo`: its report is written at the end and renders whole."""
    target = tmp_path / "demo"
    done = plait(tmp_path, "demo", "--dir", str(target), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = latest_run(target)
    page = check_rendered(browser, target, run_id, tasks=10)
    assert page.locator("svg.dag g.node.s-done").count() == 10

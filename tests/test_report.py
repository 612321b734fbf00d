"""Run metrics: wall clock from what actually ran (across resumes), no speed-up for a run that finished
nothing, and rehearsals labelled as such. Unit tests build the state rows directly; one test interrupts
a real run, waits, and resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plait import report
from runfixtures import events, latest_run, make_repo, plait, task, write_plan


def run_row(status: str = "completed", jobs: int = 2, tasks: tuple[str, ...] = ("a", "b"),
            **options: Any) -> dict[str, Any]:
    plan = {"tasks": [{"id": t} for t in tasks]}
    return {"id": "r1", "status": status, "jobs": jobs, "plan_json": json.dumps(plan),
            "options_json": json.dumps({"jobs": jobs, "rehearse": False, **options})}


def task_row(tid: str, state: str = "done", cost: float | None = None, tokens: int = 0) -> dict[str, Any]:
    return {"task_id": tid, "state": state, "cost_usd": cost, "tokens_in": tokens, "tokens_out": tokens // 10,
            "deviations_json": "[]", "incidents_json": "[]"}


def attempt(tid: str, n: int, start: float, end: float | None) -> dict[str, Any]:
    return {"task_id": tid, "attempt": n, "started_at": start, "finished_at": end}


def event(ts: float, kind: str, task: str | None = None) -> dict[str, Any]:
    return {"ts": ts, "kind": kind, "task_id": task, "data": {}}


def test_idle_time_between_a_killed_process_and_its_resume_is_not_run_time() -> None:
    """The issue's numbers: 10.9 s of real work must not be reported as 1,000 s (nor as 22.4 s)."""
    attempts = [attempt("a", 1, 0.0, 5.0),
                attempt("b", 1, 1.0, None),        # SIGKILLed mid-agent: never finished
                attempt("b", 2, 1000.2, 1005.0)]   # the resume ran it again
    evts = [event(0.0, "run.started"), event(0.0, "task.started", "a"), event(1.0, "task.started", "b"),
            event(5.0, "task.done", "a"),
            # -- killed here; the resume process starts 995 s later and resets b before run.started
            event(1000.0, "task.reset", "b"), event(1000.1, "run.started"), event(1000.2, "task.started", "b"),
            event(1005.0, "task.done", "b"), event(1005.1, "integration.started"),
            event(1006.0, "integration.verified"), event(1006.2, "run.finished")]
    m = report.compute(run_row(), [task_row("a"), task_row("b")], attempts, evts)
    # [0, 5] from the first process (b's unfinished attempt ends with its process's last event),
    # [1000.2, 1005] for b, [1005.1, 1006.2] for integration and delivery.
    assert m.wall_seconds == pytest.approx(5.0 + 4.8 + 1.1)
    assert m.task_seconds == pytest.approx(5.0 + 4.0 + 4.8)
    assert m.speedup == pytest.approx(m.task_seconds / m.wall_seconds, abs=1e-3)
    assert m.efficiency is not None and m.efficiency <= 1.0


def test_wall_clock_is_the_same_however_many_resumes_and_however_long_the_gaps() -> None:
    def run_in_pieces(gap: float, pieces: int) -> report.Metrics:
        attempts, evts, t = [], [], 0.0
        for i in range(pieces):
            evts += [event(t, "run.started"), event(t + 0.1, "task.started", f"t{i}")]
            attempts.append(attempt(f"t{i}", 1, t + 0.1, t + 2.1))
            evts += [event(t + 2.1, "task.done", f"t{i}")]
            if i < pieces - 1:
                # Ctrl-C while the next task runs: its attempt never finishes; the interrupt is recorded.
                attempts.append(attempt(f"t{i + 1}", 1, t + 2.2, None))
                evts += [event(t + 2.2, "task.started", f"t{i + 1}"), event(t + 3.0, "run.interrupted"),
                         event(t + 3.0 + gap / 2, "run.cancelled")]  # `plait cancel` on the dead run
                t += 3.0 + gap
                evts.append(event(t - 0.05, "task.reset", f"t{i + 1}"))
        evts += [event(t + 2.2, "integration.started"), event(t + 2.7, "run.finished")]
        ids = tuple(f"t{i}" for i in range(pieces))
        return report.compute(run_row(jobs=1, tasks=ids), [task_row(i) for i in ids], attempts, evts)

    one = run_in_pieces(gap=0, pieces=1)
    assert one.wall_seconds == pytest.approx(2.0 + 0.5)
    for gap in (1.0, 60.0, 86_400.0):
        many = run_in_pieces(gap=gap, pieces=4)
        # Each piece: 2.0 s of finished work + 0.8 s of the interrupted attempt; the last piece has no
        # interrupted attempt, plus 0.5 s of integration.
        assert many.wall_seconds == pytest.approx(4 * 2.0 + 3 * 0.8 + 0.5), gap


def test_back_off_waits_inside_a_process_count_as_wall_clock() -> None:
    """Waiting out a rate limit is time the user waited: only the gaps between processes are left out."""
    attempts = [attempt("a", 1, 0.0, 1.0), attempt("a", 2, 5.0, 6.0)]
    evts = [event(0.0, "run.started"), event(1.0, "task.retry", "a"), event(5.0, "task.started", "a"),
            event(6.0, "task.done", "a"), event(6.0, "integration.started"), event(6.5, "run.finished")]
    evts[1]["data"] = {"delay": 4.0}
    m = report.compute(run_row(jobs=1, tasks=("a",)), [task_row("a")], attempts, evts)
    assert m.wall_seconds == pytest.approx(6.5)


def test_a_cancelled_run_that_finished_nothing_reports_no_speed_up() -> None:
    attempts = [attempt("a", 1, 0.0, 0.4), attempt("b", 1, 0.1, 0.4)]
    evts = [event(0.0, "run.started"), event(0.3, "run.cancelling"), event(0.4, "task.failed", "a"),
            event(0.4, "task.failed", "b"), event(0.5, "run.finished")]
    m = report.compute(run_row("cancelled"), [task_row("a", "cancelled"), task_row("b", "cancelled")],
                       attempts, evts)
    assert m.speedup is None and m.efficiency is None
    text = "\n".join(report.lines(m))
    assert "no speed-up: nothing finished" in text
    assert "0.00x" not in text and "None" not in text


def test_a_run_that_never_started_anything_reports_no_speed_up() -> None:
    m = report.compute(run_row("cancelled"), [task_row("a", "cancelled"), task_row("b", "cancelled")], [],
                       [event(0.0, "run.started"), event(0.1, "run.finished")])
    assert (m.wall_seconds, m.task_seconds, m.speedup, m.efficiency) == (0.0, 0.0, None, None)
    assert "no speed-up: nothing finished" in "\n".join(report.lines(m))


def test_a_rehearsal_says_so_and_marks_its_cost_as_simulated(tmp_path: Path) -> None:
    attempts = [attempt("a", 1, 0.0, 1.0)]
    evts = [event(0.0, "run.started"), event(1.0, "task.done", "a"), event(1.1, "run.finished")]
    m = report.compute(run_row(tasks=("a",), rehearse=True), [task_row("a", cost=0.096, tokens=44695)],
                       attempts, evts)
    assert m.rehearsal is True
    text = "\n".join(report.lines(m))
    assert "simulated cost $0.0960 (rehearsal: no tokens were spent)" in text
    assert "simulated tokens in 44695" in text
    md = report.write(tmp_path, m).read_text()
    assert "rehearsal" in md.splitlines()[0].lower()
    assert json.loads((tmp_path / "report.json").read_text())["rehearsal"] is True

    real = report.compute(run_row(tasks=("a",)), [task_row("a", cost=0.096, tokens=44695)], attempts, evts)
    assert real.rehearsal is False
    text = "\n".join(report.lines(real))
    assert "cost $0.0960; tokens in 44695" in text and "simulated" not in text and "rehearsal" not in text


def test_rehearsal_is_labelled_on_the_console_and_in_the_report(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"})])
    done = plait(repo, "run", str(plan), "--rehearse")
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = latest_run(repo)
    assert f"run {run_id} completed (rehearsal" in done.stdout
    title = (repo / ".plait" / "runs" / run_id / "REPORT.md").read_text().splitlines()[0]
    assert "rehearsal" in title.lower()

    real = plait(repo, "run", str(plan))
    assert real.returncode == 0 and "(rehearsal" not in real.stdout


def test_interrupted_and_resumed_run_does_not_count_the_wait_in_between(tmp_path: Path) -> None:
    """A real run: stopped (SIGTERM, as Ctrl-C) while a task works, a pause, `plait resume`; the pause is not
    wall clock."""
    repo = make_repo(tmp_path / "repo")
    go = tmp_path / "go"  # task b works until this file exists: forever in the first process
    plan = write_plan(repo, [task("a", {"a.txt": "a\n"}, delay="0.3s"),
                             task("b", {"b.txt": "b\n"}, needs=["a"],
                                  script={"write": {"b.txt": "b\n"},
                                          "run": [f"while [ ! -f '{go}' ]; do sleep 0.05; done"]})],
                      integration={"verify": "test -f b.txt"})
    proc = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan)], cwd=repo, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if any(e["kind"] == "task.started" and e["task"] == "b" for e in events(repo, latest_run(repo))):
                    break
            except Exception:  # the database or the run row may not exist yet
                pass
            assert proc.poll() is None, "plait run ended before task b started"
            time.sleep(0.05)
        # SIGTERM, which plait handles like Ctrl-C: a SIGINT can arrive ignored (a background job, a
        # test worker), and an ignored SIGINT stays ignored in the child.
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    run_id = latest_run(repo)
    pause = 3.0
    time.sleep(pause)
    go.write_text("")

    done = plait(repo, "resume", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    evts = events(repo, run_id)
    starts = [e["ts"] for e in evts if e["kind"] == "run.started"]
    assert len(starts) == 2
    elapsed = evts[-1]["ts"] - starts[0]
    m = json.loads((repo / ".plait" / "runs" / run_id / "report.json").read_text())
    assert m["wall_seconds"] <= elapsed - pause, (m, elapsed)
    assert m["speedup"] is not None and m["wall_seconds"] > 0

"""Run metrics from the state database (seeds 003/004): measured, never claimed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from plait import graph
from plait.state import EventKind, TaskState, summarize
from plait.text import format_duration as fd
from plait.text import printable

__all__ = ["Metrics", "asdict", "compute", "lines", "write"]


@dataclass(frozen=True)
class Metrics:
    """What a run measured; times in seconds, from the state database's attempts and events."""

    run_id: str
    status: str
    jobs: int
    rehearsal: bool  # started with --rehearse: a scripted model server answered; cost and tokens are simulated
    # Time the run was under way: the union of every attempt's interval, back-off waits and integration to the
    # run's end. Gaps between an interrupted process and its resume are not counted, however many and long.
    wall_seconds: float
    task_seconds: float  # sum over every attempt: the sequential cost of the same work
    speedup: float | None  # task / wall seconds; None when no task finished (nothing was sped up)
    critical_path_seconds: float
    lower_bound_seconds: float
    efficiency: float | None  # lower bound / wall: 1.0: no schedule could have been faster; None when speedup is
    tasks: int
    done: int
    failed: list[str]
    blocked: list[str]
    retries: int
    conflicts: int
    cost_usd: float | None  # simulated in a rehearsal
    tokens_in: int
    tokens_out: int
    # task -> one line per change outside its declared scope and per incident (refused writes, what
    # the agent did to its own workspace repository)
    deviations: dict[str, list[str]]
    # task -> its review (ReviewRecord.summary: verdict, rounds, last comments, the reviewer's and fixer's cost)
    reviews: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_gate: str | None = None  # a gate that failed, so nothing new started
    # What agents did to the merged result (a conflict resolved, the integration test repaired, the end review),
    # one line each; their cost is in cost_usd too.
    integration_agents: list[str] = field(default_factory=list)
    why: str = ""  # why the run did not complete, as its end said
    # task -> the earlier run whose verified work this run took (plait.run.reuse): done, but none of its time or
    # cost is this run's, so it counts in neither the sum of task times nor the speed-up
    reused: dict[str, str] = field(default_factory=dict)


def compute(run: dict[str, Any], tasks: list[dict[str, Any]], attempts: list[dict[str, Any]],
            events: list[dict[str, Any]] | None = None, summary: dict[str, Any] | None = None) -> Metrics:
    """The run's metrics from its rows, and from its events or (cheaper, the same figures) its summary
    (`Store.summary`, kept current as events are written)."""
    s = summary if summary is not None else summarize(events or [])
    spans = [(start, end) for start, end in s.get("spans", [])]
    needs, _ = plan_graph(run["plan_json"])
    options = json.loads(run.get("options_json") or "{}")
    spent: dict[str, float] = dict.fromkeys(needs, 0.0)
    ran = intervals(attempts, spans)
    for tid, (start, end) in ran:
        spent[tid] = spent.get(tid, 0.0) + end - start
    wall = union_seconds([span for _, span in ran] + waits(s, spans))
    work = sum(spent.values())
    cp_path = graph.critical_path(needs, spent)
    cp = sum(spent[t] for t in cp_path)
    jobs = int(run["jobs"] or 1)
    lb = max(cp, work / jobs)
    done = sum(1 for t in tasks if t["state"] == TaskState.DONE)
    reused = {t["task_id"]: t["reused_from"] for t in tasks if t.get("reused_from")}
    measured = done > len(reused) and wall > 0
    costs = [t["cost_usd"] for t in tasks if t["cost_usd"] is not None]
    at_integration = integration_lines(s.get("integration", []))
    costs += [c for c, _ in at_integration if c is not None]
    return Metrics(
        run_id=run["id"], status=run["status"], jobs=jobs, rehearsal=bool(options.get("rehearse")),
        wall_seconds=round(wall, 3), task_seconds=round(work, 3),
        speedup=round(work / wall, 3) if measured else None,
        critical_path_seconds=round(cp, 3), lower_bound_seconds=round(lb, 3),
        efficiency=round(lb / wall, 3) if measured else None, tasks=len(tasks), done=done,
        failed=[t["task_id"] for t in tasks if t["state"] == TaskState.FAILED],
        blocked=[t["task_id"] for t in tasks if t["state"] == TaskState.BLOCKED],
        retries=s.get("retries", 0), conflicts=s.get("conflicts", 0),
        cost_usd=round(sum(costs), 6) if costs else None,
        tokens_in=sum(t["tokens_in"] or 0 for t in tasks), tokens_out=sum(t["tokens_out"] or 0 for t in tasks),
        deviations={t["task_id"]: found for t in tasks if (found := deviation_lines(t))},
        reviews={t["task_id"]: json.loads(t["review_json"]) for t in tasks if t.get("review_json")},
        integration_agents=[line for _, line in at_integration],
        failed_gate=s.get("failed_gate"), why=s.get("why", ""),
        reused=reused,
    )


@lru_cache(maxsize=4)
def plan_graph(plan_json: str) -> tuple[dict[str, list[str]], frozenset[str]]:
    """(each task's needs, the gates) of a recorded plan: read once per plan (a status read needs them twice,
    and 1,000 tasks' plan is half a megabyte of JSON). Not to be changed by the caller."""
    tasks = json.loads(plan_json)["tasks"]
    return {t["id"]: list(t.get("needs", [])) for t in tasks}, frozenset(t["id"] for t in tasks if t.get("gate"))


def json_list(text: str | None) -> list[Any]:
    """A task's list column (`conflicts_json`, `deviations_json`...): most are empty, read without a parse."""
    return [] if not text or text == "[]" else list(json.loads(text))


def integration_lines(events: list[dict[str, Any]]) -> list[tuple[float | None, str]]:
    """(cost, line) for each agent's work on the merged result, from the integration events."""
    out: list[tuple[float | None, str]] = []
    for e in events:
        d = e["data"]
        if e["kind"] == EventKind.INTEGRATION_RESOLVED:
            what = (f"resolved by an agent in {d.get('rounds')} round(s)" if d.get("ok")
                    else f"NOT resolved ({d.get('error')})")
            partners = ", ".join(d.get("with") or []) or "earlier work"
            out.append((d.get("cost_usd"), f"conflict of {d.get('task')} with {partners}: {what}"))
        elif e["kind"] == EventKind.INTEGRATION_REPAIRED:
            what = (f"repaired by the integration engineer in {d.get('rounds')} round(s), changing "
                    f"{', '.join(d.get('files') or [])}" if d.get("ok") else f"NOT repaired ({d.get('error')})")
            tests = f"; it changed test files {', '.join(d['test_files'])}" if d.get("test_files") else ""
            out.append((d.get("cost_usd"), f"integration test {what}{tests}"))
        elif e["kind"] == EventKind.INTEGRATION_CONCERNS:
            out.append((d.get("cost_usd"), f"the integration verifier marked {d.get('marked')} of "
                                           f"{d.get('concerns')} integration concern(s)"))
        elif e["kind"] in (EventKind.INTEGRATION_REVIEWED, EventKind.INTEGRATION_FIXED):
            out.append((d.get("cost_usd"), f"end review round {d.get('round')}: " + (
                str(d.get("verdict", "")).replace("_", " ") if e["kind"] == EventKind.INTEGRATION_REVIEWED
                else "fixer " + ("done" if d.get("ok") else "FAILED"))))
    return out


def deviation_lines(task: dict[str, Any]) -> list[str]:
    paths = json_list(task.get("deviations_json"))
    incidents = json_list(task.get("incidents_json"))
    return [f"out of scope: {p}" for p in paths] + [str(i) for i in incidents]


def process_spans(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each process that ran the run: from its `run.started` to the last event it wrote (`run.finished`,
    `run.interrupted`, or whatever it wrote last before it was killed)."""
    return [(start, end) for start, end in summarize(events).get("spans", [])]


def _end_of_process(spans: list[tuple[float, float]], at: float) -> float:
    """When the process that was running at `at` stopped (`at` itself if none was)."""
    ends = [end for start, end in spans if start <= at]
    return max(at, ends[-1]) if ends else at


def attempt_intervals(attempts: list[dict[str, Any]],
                      events: list[dict[str, Any]]) -> list[tuple[str, tuple[float, float]]]:
    """(task, (start, end)) of every attempt (see `intervals`)."""
    return intervals(attempts, process_spans(events))


def intervals(attempts: list[dict[str, Any]],
              spans: list[tuple[float, float]]) -> list[tuple[str, tuple[float, float]]]:
    """(task, (start, end)) of every attempt. One its process never finished (killed, interrupted, or
    still running) ends with the last event that process wrote, never with the next process's start."""
    out = []
    for a in attempts:
        start = a["started_at"]
        if start is None:
            continue
        end = a["finished_at"] if a["finished_at"] is not None else _end_of_process(spans, start)
        out.append((a["task_id"], (start, max(start, end))))
    return out


def waits(summary: dict[str, Any], spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Back-off waits before a retry, and integration to the run's end, each within its process."""
    out = [(ts, min(_end_of_process(spans, ts), ts + float(delay or 0.0))) for ts, delay in summary.get("waits", [])]
    return out + [(ts, _end_of_process(spans, ts)) for ts in summary.get("integration_started", [])]


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of the intervals: overlapping work counts once."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def lines(m: Metrics) -> list[str]:
    times = f"wall clock {fd(m.wall_seconds)}; sum of task times {fd(m.task_seconds)}; "
    if m.speedup is None or m.efficiency is None:
        out = [times + ("no speed-up: nothing finished" if not m.done else "no speed-up: every task was reused"
                       if m.done == len(m.reused) else "no speed-up: no time measured")]
    else:
        out = [
            times + f"speed-up {m.speedup:.2f}x with --jobs {m.jobs}",
            f"lower bound {fd(m.lower_bound_seconds)} = max(critical path {fd(m.critical_path_seconds)}, "
            f"work/jobs); efficiency {100 * m.efficiency:.0f}%",
        ]
    out.append(f"tasks {m.done}/{m.tasks} done; failed {len(m.failed)}; blocked {len(m.blocked)}; "
               f"retries {m.retries}; conflicts {m.conflicts}")
    if m.reused:
        out.append(f"reused {len(m.reused)} verified task(s) from run {', '.join(sorted(set(m.reused.values())))} "
                   f"(inputs unchanged): {', '.join(m.reused)}; their time and cost are that run's, not counted here")
    if m.deviations:
        total = sum(len(v) for v in m.deviations.values())
        out.append(f"deviations {total} in {len(m.deviations)} task(s): see REPORT.md")
    if m.reviews:
        out.append(review_line(m.reviews))
    out += [f"at integration: {printable(line)}" for line in m.integration_agents]
    if m.why:
        out.append(f"why: {printable(m.why)}")
    if m.cost_usd is not None or m.tokens_in:
        cost = f"${m.cost_usd:.4f}" if m.cost_usd is not None else "unknown"
        if m.rehearsal:
            out.append(f"simulated cost {cost} (rehearsal: no tokens were spent); "
                       f"simulated tokens in {m.tokens_in}, out {m.tokens_out}")
        else:
            out.append(f"cost {cost}; tokens in {m.tokens_in}, out {m.tokens_out}")
    return out


def review_line(reviews: dict[str, dict[str, Any]]) -> str:
    approved = [r for r in reviews.values() if r.get("approved")]
    first = sum(1 for r in approved if r.get("rounds") == 1)
    human = sorted(t for t, r in reviews.items() if not r.get("approved") and r.get("rounds") == r.get("max_rounds"))
    costs = [r["cost_usd"] for r in reviews.values() if r.get("cost_usd") is not None]
    text = (f"review: {len(reviews)} task(s) reviewed, {len(approved)} approved ({first} at the first round), "
            f"{sum(r.get('rounds', 0) for r in reviews.values())} round(s)")
    text += f"; needs a human: {', '.join(human)}" if human else ""
    return text + (f"; reviewer and fixer cost ${sum(costs):.4f}" if costs else "")


def write(folder: Path, m: Metrics) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(asdict(m), indent=2) + "\n")
    path = folder / "REPORT.md"
    path.write_text(markdown(m))
    return path


def markdown(m: Metrics) -> str:
    """REPORT.md's text."""
    body = [f"# Rehearsal run {m.run_id}: {m.status}" if m.rehearsal else f"# Run {m.run_id}: {m.status}", ""]
    if m.rehearsal:
        body += ["A rehearsal (`--rehearse`): the agent CLIs talked to plait's scripted model server, so no "
                 "tokens were spent and cost and tokens below are simulated.", ""]
    body += [f"- {line}" for line in lines(m)]
    if m.failed:
        body.append(f"- failed: {', '.join(m.failed)}")
    if m.blocked:
        body.append(f"- blocked (a dependency failed or the run stopped): {', '.join(m.blocked)}")
    if m.reviews:
        body += ["", "## Review", ""]
        for task, r in m.reviews.items():
            state = "approved" if r.get("approved") else str(r.get("verdict") or "under way").replace("_", " ")
            body.append(f"- `{task}`: {state} after {r.get('rounds')} of at most {r.get('max_rounds')} round(s)")
            body += [f"  - {printable(str(c))}" for c in r.get("comments", [])]
    if m.deviations:
        body += ["", "## Deviations", ""]
        body += [f"- `{task}`: {printable(line)}" for task, found in m.deviations.items() for line in found]
    return "\n".join(body) + "\n"

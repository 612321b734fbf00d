"""Run metrics from the state database (seeds 003/004): measured, never claimed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plait import measure
from plait.journal import summarize
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
    return Metrics(**measure.metrics(run, tasks, attempts, summary if summary is not None else summarize(events or [])))


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

"""A run's HTML report (`report.html`): the task graph and a timeline of attempts as inline SVG, the measured
figures and the parallelization analysis, in one self-contained file (no network, no scripts). The
dashboard shows the same pieces live (`fragment`). Every text from the run (titles, errors) is escaped."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from html import escape
from typing import Any

from plait import graph, measure, report
from plait.plan.model import format_duration as fd
from plait.state import EventKind
from plait.text import printable

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 150, 36, 60, 16, 10
LANE_H, LABEL_W, GANTT_W, GANTT_PAD = 24, 90, 800, 40


@dataclass(frozen=True)
class RunRecord:
    """What a run's state database holds about it, as read once (see `api.run_record`)."""

    run: dict[str, Any]
    tasks: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    events: list[dict[str, Any]]
    live: bool = False  # a process is running it now: unfinished attempts end at "now"


@dataclass(frozen=True)
class Bar:
    lane: int
    start: float
    end: float
    kind: str  # attempt, review, wait, integration, conflict
    label: str
    css: str = ""


@dataclass(frozen=True)
class Analysis:
    time_reduction: float | None  # (sequential − wall) ÷ sequential
    efficiency: float | None
    conflicts: list[tuple[str, float | None]]  # task, seconds to resolve (None: not resolved)
    overhead_seconds: float
    roi: float | None  # (time saved − overhead) ÷ overhead


def needs_of(rec: RunRecord) -> dict[str, list[str]]:
    plan = json.loads(rec.run["plan_json"])
    return {t["id"]: list(t.get("needs", [])) for t in plan["tasks"]}


def layout(needs: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
    """Top-left corner of each node: one column per level, left to right; in a column, nodes ordered by
    the mean row of their dependencies (fewer crossings), then by the plan's order."""
    level = graph.levels(needs)
    row: dict[str, float] = {}
    out: dict[str, tuple[int, int]] = {}
    for depth in range(max(level.values(), default=-1) + 1):
        column = [n for n in needs if level[n] == depth]
        deps = {n: [row[d] for d in needs[n] if d in row] for n in column}
        column.sort(key=lambda n: sum(deps[n]) / len(deps[n]) if deps[n] else 0.0)
        for i, node in enumerate(column):
            row[node] = i
            out[node] = (PAD + depth * (NODE_W + COL_GAP), PAD + i * (NODE_H + ROW_GAP))
    return out


def dag_svg(rec: RunRecord, metrics: report.Metrics) -> str:
    needs = needs_of(rec)
    at = layout(needs)
    rows = {t["task_id"]: t for t in rec.tasks}
    spent = {tid: 0.0 for tid in needs}
    for tid, (start, end) in measure.attempt_intervals(rec.attempts, rec.events):
        spent[tid] = spent.get(tid, 0.0) + end - start
    critical = graph.critical_path(needs, spent) if any(spent.values()) else []
    on_path = set(itertools.pairwise(critical))
    conflicted = {str(e["data"].get("task")) for e in rec.events if e["kind"] == EventKind.INTEGRATION_CONFLICT}
    conflicted |= {t["task_id"] for t in rec.tasks if json.loads(t.get("conflicts_json") or "[]")}
    width = max((x for x, _ in at.values()), default=0) + NODE_W + PAD
    height = max((y for _, y in at.values()), default=0) + NODE_H + PAD
    out = [f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="task graph">']
    for node, deps in needs.items():
        for dep in deps:
            if dep in at:
                (x1, y1), (x2, y2) = at[dep], at[node]
                x1, y1, y2 = x1 + NODE_W, y1 + NODE_H // 2, y2 + NODE_H // 2
                css = "edge critical" if (dep, node) in on_path else "edge"
                out.append(f'<path class="{css}" d="M{x1},{y1} C{x1 + COL_GAP // 2},{y1} '
                           f'{x2 - COL_GAP // 2},{y2} {x2},{y2}"/>')
    for node, (x, y) in at.items():
        row = rows.get(node, {})
        state = str(row.get("state") or "pending")
        marks = ("⚡" if node in conflicted else "") + ("⚠" if node in metrics.deviations else "")
        css = " ".join(["node", f"s-{state}", *(["critical"] if node in critical else []),
                        *(["conflict"] if node in conflicted else []),
                        *(["deviation"] if node in metrics.deviations else [])])
        tip = f"{node}: {row.get('title') or ''} ({state})"
        if row.get("error"):
            tip += f"\n{row['error']}"
        out.append(f'<g class="{escape(css)}" data-task="{escape(node)}"><title>{escape(printable(tip))}</title>'
                   f'<a href="tasks/{escape(node)}/EVIDENCE.md"><rect x="{x}" y="{y}" width="{NODE_W}" '
                   f'height="{NODE_H}" rx="6"/><text x="{x + 8}" y="{y + 15}">{escape(_cut(node, 18))} '
                   f'{escape(marks)}</text><text class="sub" x="{x + 8}" y="{y + 29}">'
                   f'{escape(_cut(printable(str(row.get("title") or "")), 22))}</text></a></g>')
    out.append("</svg>")
    return "\n".join(out)


def _tick(seconds: float, span: float) -> str:
    return f"{seconds:.1f}s" if span < 60 else fd(seconds)


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def bars(rec: RunRecord, now: float | None = None) -> tuple[list[Bar], list[str]]:
    """Every bar of the timeline and the lanes' names: attempts packed on agent lanes (a lane is free
    again when its attempt ends), then a lane of back-off waits and one for integration."""
    intervals = measure.attempt_intervals(rec.attempts, rec.events)
    out: list[Bar] = []
    lane_free: list[float] = []
    placed: list[tuple[str, float, float, int]] = []
    for a, (tid, (start, end)) in zip([a for a in rec.attempts if a["started_at"] is not None], intervals,
                                      strict=True):
        if a["finished_at"] is None and rec.live and now is not None:
            end = max(end, now)
        lane = next((i for i, free in enumerate(lane_free) if free <= start), len(lane_free))
        lane_free[lane:lane + 1] = [end]
        placed.append((tid, start, end, lane))
        outcome = a["outcome"] if a["finished_at"] is not None or rec.live else "interrupted"
        out.append(Bar(lane, start, end, "attempt", f"{tid} #{a['attempt']}: {outcome}", f"o-{outcome}"))
    waits_lane, integration_lane = len(lane_free), len(lane_free) + 1
    spans = measure.process_spans(rec.events)
    opened: dict[str, float] = {}
    conflict_at: dict[str, float] = {}
    for e in rec.events:
        kind, ts, tid = e["kind"], e["ts"], e["task_id"]
        end_of_process = max(now, ts) if rec.live and now else measure.end_of_process(spans, ts)
        if kind == EventKind.TASK_RETRY:
            delay = float(e["data"].get("delay") or 0.0)
            out.append(Bar(waits_lane, ts, min(end_of_process, ts + delay), "wait", f"{tid}: back-off {delay:.1f}s"))
        elif kind == EventKind.TASK_REVIEWING and tid:
            opened[tid] = ts
        elif kind == EventKind.TASK_REVIEWED and tid in opened:
            start = opened.pop(tid)
            home = next((ln for t, s, en, ln in placed if t == tid and s <= start <= en), None)
            if home is not None:
                verdict = str(e["data"].get("verdict", "")).replace("_", " ")
                out.append(Bar(home, start, ts, "review", f"{tid}: review round {e['data'].get('round')}: {verdict}"))
        elif kind == EventKind.INTEGRATION_STARTED:
            out.append(Bar(integration_lane, ts, end_of_process, "integration", "integration"))
        elif kind == EventKind.INTEGRATION_CONFLICT:
            conflict_at[str(e["data"].get("task"))] = ts
        elif kind == EventKind.INTEGRATION_RESOLVED and str(e["data"].get("task")) in conflict_at:
            task = str(e["data"].get("task"))
            out.append(Bar(integration_lane, conflict_at.pop(task), ts, "conflict", f"conflict of {task} resolved"))
    names = [f"agent {i + 1}" for i in range(waits_lane)] + ["back-off", "integration"]
    return out, names


def gantt_svg(rec: RunRecord, now: float | None = None) -> str:
    found, names = bars(rec, now)
    starts = [e["ts"] for e in rec.events if e["kind"] == EventKind.RUN_STARTED] + [b.start for b in found]
    t0 = min(starts, default=0.0)
    t1 = max([b.end for b in found] + [t0 + 1.0])
    scale = (GANTT_W - LABEL_W - GANTT_PAD) / (t1 - t0)
    height = LANE_H * len(names) + 30
    out = [f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{GANTT_W}" height="{height}" '
           f'viewBox="0 0 {GANTT_W} {height}" role="img" aria-label="timeline">']
    for i, name in enumerate(names):
        out.append(f'<text class="lane" x="4" y="{i * LANE_H + 16}">{escape(name)}</text>')
    for tick in range(5):
        x = LABEL_W + tick * (GANTT_W - LABEL_W - GANTT_PAD) / 4
        label = _tick(tick * (t1 - t0) / 4, t1 - t0)
        out.append(f'<text class="tick" x="{x:.1f}" y="{height - 6}">{escape(label)}</text>')
    for b in found:
        x, w = LABEL_W + (b.start - t0) * scale, max(2.0, (b.end - b.start) * scale)
        inset = 7 if b.kind in ("review", "conflict") else 2
        out.append(f'<rect class="bar {b.kind} {escape(b.css)}" x="{x:.1f}" y="{b.lane * LANE_H + inset}" '
                   f'width="{w:.1f}" height="{LANE_H - 2 * inset}"><title>{escape(printable(b.label))} '
                   f'({fd(b.end - b.start)})</title></rect>')
        if b.kind == "attempt" and w > 40:  # the task's name where it fits
            name = _cut(b.label.split(" #")[0], int(w / 7))
            out.append(f'<text class="on-bar" x="{x + 3:.1f}" y="{b.lane * LANE_H + 16}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def analyse(rec: RunRecord, m: report.Metrics) -> Analysis:
    """Time saved against its price: orchestration overhead is the time a plait process ran the run while no
    attempt (agent and verify) was under way: start-up, scheduling gaps, back-off waits and integration."""
    spans = measure.process_spans(rec.events)
    attempts = [span for _, span in measure.attempt_intervals(rec.attempts, rec.events)]
    overhead = max(0.0, measure.union_seconds(spans) - measure.union_seconds(attempts))
    seq = m.task_seconds
    conflicts: list[tuple[str, float | None]] = []
    opened: dict[str, float] = {}
    for e in rec.events:
        task = str(e["data"].get("task"))
        if e["kind"] == EventKind.INTEGRATION_CONFLICT:
            opened[task] = e["ts"]
            conflicts.append((task, None))
        elif e["kind"] == EventKind.INTEGRATION_RESOLVED and task in opened and e["data"].get("ok"):
            took = e["ts"] - opened.pop(task)
            conflicts = [(t, took if t == task and s is None else s) for t, s in conflicts]
    saved = seq - m.wall_seconds
    return Analysis(time_reduction=saved / seq if seq > 0 and m.speedup is not None else None,
                    efficiency=m.efficiency, conflicts=conflicts, overhead_seconds=round(overhead, 3),
                    roi=(saved - overhead) / overhead if overhead > 0 and m.speedup is not None else None)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def figures_html(m: report.Metrics, a: Analysis) -> str:
    cost = "—" if m.cost_usd is None else f"${m.cost_usd:.4f}" + (" (simulated)" if m.rehearsal else "")
    rows = [("wall clock", fd(m.wall_seconds)), ("sum of task time (sequential)", fd(m.task_seconds)),
            ("speed-up", "—" if m.speedup is None else f"{m.speedup:.2f}× with {m.jobs} agents"),
            ("lower bound", f"{fd(m.lower_bound_seconds)} (critical path {fd(m.critical_path_seconds)})"),
            ("efficiency", _pct(m.efficiency)), ("tasks", f"{m.done}/{m.tasks} done, {len(m.failed)} failed, "
                                                           f"{len(m.blocked)} blocked, {m.retries} retries"),
            ("cost", cost), ("tokens", f"{m.tokens_in} in, {m.tokens_out} out")]
    analysis = [("time reduction", _pct(a.time_reduction)), ("efficiency ratio", _pct(a.efficiency)),
                ("integration conflicts", str(len(a.conflicts))),
                *[(f"conflict of {task}", "not resolved" if took is None else f"resolved in {fd(took)}")
                  for task, took in a.conflicts],
                ("orchestration overhead", fd(a.overhead_seconds)),
                ("overhead ROI", "—" if a.roi is None else f"{a.roi:.1f}×")]

    def table(css: str, items: list[tuple[str, str]]) -> str:
        body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in items)
        return f'<table class="{css}">{body}</table>'

    return (f'<h2>Measured</h2>{table("figures", rows)}'
            f'<h2>Parallelization analysis</h2>{table("analysis", analysis)}')


def tasks_html(rec: RunRecord, m: report.Metrics) -> str:
    rows = []
    for t in rec.tasks:
        tid = t["task_id"]
        notes = [*m.deviations.get(tid, []), *([t["error"]] if t["error"] and t["state"] != "done" else [])]
        rows.append(f'<tr data-task="{escape(tid)}"><td><a href="tasks/{escape(tid)}/EVIDENCE.md">{escape(tid)}</a>'
                    f'</td><td>{escape(printable(str(t["title"] or "")))}</td><td class="state s-{escape(t["state"])}">'
                    f'{escape(t["state"])}</td><td>{t["attempt"]}</td>'
                    f'<td>{escape(printable("; ".join(map(str, notes))))}</td></tr>')
    return ('<table class="tasks"><tr><th>task</th><th>title</th><th>state</th><th>attempts</th><th>notes</th></tr>'
            + "".join(rows) + "</table>")


def status_word(rec: RunRecord) -> str:
    """The run's status; one recorded as running whose process is gone was interrupted (as `plait status`)."""
    word = str(rec.run["status"])
    return word if rec.live or word not in ("running", "cancelling") else "interrupted"


def fragment(rec: RunRecord, now: float | None = None) -> str:
    """Everything below the page's title: what the dashboard refreshes while a run is live."""
    m = report.compute(rec.run, rec.tasks, rec.attempts, rec.events)
    status = status_word(rec)
    why = f" — {printable(m.why)}" if m.why else ""
    return (f'<p class="status">status <b id="run-status">{escape(status)}</b>{escape(why)}; '
            f'plan {escape(str(rec.run["plan_name"] or rec.run["plan_path"]))}</p>'
            f'<h2>Task graph</h2><p class="legend">{LEGEND}</p>{dag_svg(rec, m)}'
            f'<h2>Timeline</h2>{gantt_svg(rec, now)}{figures_html(m, analyse(rec, m))}'
            f'<h2>Tasks</h2>{tasks_html(rec, m)}')


LEGEND = " ".join(f'<span class="key s-{s}">{s}</span>'
                  for s in ("done", "running", "retrying", "pending", "failed", "blocked", "cancelled"))
LEGEND += ' <span class="key critical">critical path</span> ⚡ conflict ⚠ deviation'

NO_ICON = '<link rel="icon" href="data:,">'  # a browser asks no server (and no file) for an icon
STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
svg text{font:11px system-ui,sans-serif;fill:#111}svg text.sub{fill:#555;font-size:10px}
.node rect{stroke:#666;stroke-width:1}.node.critical rect{stroke:#c00;stroke-width:3}
.edge{fill:none;stroke:#999;stroke-width:1.2}.edge.critical{stroke:#c00;stroke-width:2.5}
.s-done,.o-verified{fill:#bfe5bf;background:#bfe5bf}.s-failed,.o-failed{fill:#f4b4b4;background:#f4b4b4}
.s-running,.o-running{fill:#b5d3f5;background:#b5d3f5}.s-retrying,.o-retry{fill:#f7e3a1;background:#f7e3a1}
.s-blocked{fill:#e0c9a6;background:#e0c9a6}.s-cancelled,.o-interrupted,.o-cancelled{fill:#ddd;background:#ddd}
.s-pending{fill:#fff;background:#fff}.key{border:1px solid #999;padding:0 4px}.key.critical{border:2px solid #c00}
.bar{stroke:#555;stroke-width:.5}.bar.review{fill:#8a63d2}.bar.wait{fill:#f0c36b}.bar.integration{fill:#9bb}
.bar.conflict{fill:#c00}.lane,.tick{fill:#444}pre.log{background:#111;color:#ddd;padding:6px;max-height:14em;
overflow:auto;white-space:pre-wrap}
"""


def page(rec: RunRecord, head: str = "", top: str = "", live: str | None = None) -> str:
    """The whole page: the report file, or (with a script in `head`, buttons in `top` and the live part in
    `live`) the dashboard's run page."""
    title = f"plait run {rec.run['id']}"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{NO_ICON}<title>{escape(title)}</title>'
            f"<style>{STYLE}</style>{head}</head><body><h1>{escape(title)}</h1>{top}"
            f'<div id="live">{fragment(rec) if live is None else live}</div></body></html>\n')

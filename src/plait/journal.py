"""What a run's event log holds: every kind of event, every state a task can be in, and the summary folded from
the events as they are written. Plain definitions with nothing to import: a status read needs them and nothing
else of the state module (docs/benchmarks.md)."""

from __future__ import annotations

from enum import StrEnum

TYPE_CHECKING = False  # typing takes longer to import than this whole module; mypy treats this as True
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


# How an integration concern was marked (plait.run.concerns)
ALIGNED, NOT_ALIGNED, UNKNOWN = "aligned", "not aligned", "unknown"


class TaskState(StrEnum):
    """Every state a task can be in; status, counts and the report all count every one of them."""

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"  # an attempt failed transiently; the next waits out its back-off
    DONE = "done"  # verified
    FAILED = "failed"
    BLOCKED = "blocked"  # a task it needs failed (or the run stopped before it could start)
    CANCELLED = "cancelled"


class EventKind(StrEnum):
    """Every kind of event in the log (`events.kind`): what the report, status and dashboards read."""

    DELIVERED = "delivered"
    INTEGRATION_CONCERNS = "integration.concerns"  # the integration verifier marked the concerns
    INTEGRATION_CONFLICT = "integration.conflict"
    INTEGRATION_STARTED = "integration.started"
    INTEGRATION_FIXED = "integration.fixed"  # the end review's fixer
    INTEGRATION_REPAIRED = "integration.repaired"  # the integration engineer's rounds ended
    INTEGRATION_REPAIRING = "integration.repairing"
    INTEGRATION_RESOLVED = "integration.resolved"  # the resolver's rounds on one conflict ended
    INTEGRATION_RESOLVING = "integration.resolving"
    INTEGRATION_REVIEWED = "integration.reviewed"  # the end review's verdict
    INTEGRATION_REVIEWING = "integration.reviewing"
    INTEGRATION_VERIFIED = "integration.verified"
    LIMITS_BACKOFF = "limits.backoff"
    LIMITS_INCREASE = "limits.increase"
    REHEARSAL_SERVER = "rehearsal.server"
    RUN_BUDGET_SPENT = "run.budget_spent"
    RUN_CANCEL_REQUESTED = "run.cancel_requested"
    RUN_CANCELLED = "run.cancelled"
    RUN_CANCELLING = "run.cancelling"
    RUN_ESTIMATES = "run.estimates"  # the estimates the run schedules by, learned from earlier runs (plait.history)
    RUN_FINISHED = "run.finished"
    RUN_GATE_FAILED = "run.gate_failed"
    RUN_INTERRUPTED = "run.interrupted"
    RUN_STARTED = "run.started"
    TASK_AGENT_DONE = "task.agent_done"
    TASK_ATTEMPT_DONE = "task.attempt_done"
    TASK_BLOCKED = "task.blocked"
    TASK_CANCELLED = "task.cancelled"
    TASK_CAPTURED = "task.captured"
    TASK_CONFLICT = "task.conflict"
    TASK_DONE = "task.done"
    TASK_FAILED = "task.failed"
    TASK_FIXED = "task.fixed"
    TASK_NODE_LOST = "task.node_lost"  # the Ray executor lost the attempt's node: it runs again elsewhere
    TASK_RESET = "task.reset"
    TASK_RETRY = "task.retry"
    TASK_REUSED = "task.reused"  # done with an earlier run's verified work: its inputs are unchanged
    TASK_REVIEWED = "task.reviewed"
    TASK_REVIEWING = "task.reviewing"
    TASK_STARTED = "task.started"
    TASK_VERIFIED = "task.verified"
    TASK_WORKSPACE = "task.workspace"


# Events a run's own process does not write: the next process's preparations before its `run.started`
# (`task.reset`, the rehearsal server, the learned estimates) and `plait cancel` from another shell. They say
# nothing about when the process before them stopped.
NOT_THE_RUNNER = {EventKind.TASK_RESET, EventKind.REHEARSAL_SERVER, EventKind.RUN_ESTIMATES,
                  EventKind.RUN_CANCEL_REQUESTED, EventKind.RUN_CANCELLED}
# The integration agents' events the report describes one line each (plait.measure.integration_lines).
INTEGRATION_AGENTS = {EventKind.INTEGRATION_RESOLVED, EventKind.INTEGRATION_REPAIRED, EventKind.INTEGRATION_CONCERNS,
                      EventKind.INTEGRATION_REVIEWED, EventKind.INTEGRATION_FIXED}


def fold(summary: dict[str, Any], kind: str, task_id: str | None, ts: float, data: Mapping[str, Any]) -> None:
    """Add one event to a run's summary (`runs.summary_json`): what the metrics read of the event log, kept
    current as events are written, so a status read never goes through every event. `spans`: each process
    that ran the run, from its `run.started` to the last event it wrote; `waits`: (when, delay) of each
    retry's back-off; `integration`: the integration agents' events."""
    spans = summary.setdefault("spans", [])
    if kind == EventKind.RUN_STARTED:
        spans.append([ts, ts])
    elif spans and kind not in NOT_THE_RUNNER:
        spans[-1][1] = max(spans[-1][1], ts)
    if kind == EventKind.TASK_RETRY:
        summary["retries"] = summary.get("retries", 0) + 1
        summary.setdefault("waits", []).append([ts, data.get("delay")])
    elif kind == EventKind.TASK_CONFLICT:
        summary["conflicts"] = summary.get("conflicts", 0) + 1
    elif kind == EventKind.INTEGRATION_STARTED:
        summary.setdefault("integration_started", []).append(ts)
    elif kind in INTEGRATION_AGENTS:
        summary.setdefault("integration", []).append({"kind": kind, "data": dict(data)})
    elif kind == EventKind.RUN_GATE_FAILED and "failed_gate" not in summary:
        summary["failed_gate"] = data.get("gate")
    elif kind == EventKind.RUN_FINISHED:
        summary["why"] = str(data.get("why") or "")
    summary["last"] = f"{kind} {task_id or ''}".strip()


def summarize(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of a run from its events (what `Store.emit` keeps in `runs.summary_json`)."""
    summary: dict[str, Any] = {}
    for e in events:
        fold(summary, e["kind"], e["task_id"], e["ts"], e["data"])
    return summary

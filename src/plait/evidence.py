"""Per-task evidence under `.plait/runs/<run>/tasks/<task>/` and the context handed to dependents
(seed 004 context schema v1.0)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.redact import write_text

if TYPE_CHECKING:  # annotations only: reading evidence (`plait status`) needs no plan model
    from plait.agents.base import ErrorKind
    from plait.plan.model import Plan, Task

CONTEXT_VERSION = "1.0"

# Lines of an agent's summary that state something the merged context gathers (docs/run.md, "Parent and
# merged context"): `ASSUMES: <interface> ...` (what the task relies on from another task),
# `PROVIDES: <interface> ...` (what it offers others), `DECISION: ...` and `PENDING: ...`.
_STATEMENT = re.compile(r"^[ \t>*-]*(ASSUMES|PROVIDES|DECISION|PENDING)[ \t]*:[ \t]*(\S.*?)[ \t]*$", re.M)


def summary_statements(summary: str) -> dict[str, list[str]]:
    """The `ASSUMES:`/`PROVIDES:`/`DECISION:`/`PENDING:` lines of an agent's summary, by keyword."""
    found: dict[str, list[str]] = {"ASSUMES": [], "PROVIDES": [], "DECISION": [], "PENDING": []}
    for keyword, text in _STATEMENT.findall(summary or ""):
        if text not in found[keyword]:
            found[keyword].append(text)
    return found


@dataclass(frozen=True)
class VerifyResult:
    command: str | None
    exit_code: int | None
    seconds: float
    output_tail: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.command is None or (self.exit_code == 0 and not self.timed_out)


@dataclass(frozen=True)
class ReviewRound:
    """One review of a task's work, and the fix that followed it (if any)."""

    round: int
    commit: str  # what was reviewed
    verdict: str  # "approved" | "changes_requested"
    comments: list[str]
    malformed: bool = False  # no readable verdict even when asked twice: counted as changes requested
    reviewer_cost_usd: float | None = None
    fixer_cost_usd: float | None = None
    fixer_summary: str = ""


@dataclass(frozen=True)
class ReviewRecord:
    reviewer: str  # profiles
    fixer: str
    max_rounds: int
    rounds: list[ReviewRound]
    approved: bool
    cost_usd: float | None  # the reviewer's and the fixer's, together

    def summary(self) -> dict[str, Any]:
        """What `plait status` and the report show."""
        last = self.rounds[-1] if self.rounds else None
        return {"verdict": last.verdict if last else None, "rounds": len(self.rounds), "max_rounds": self.max_rounds,
                "approved": self.approved, "comments": last.comments if last and not self.approved else [],
                "reviewer": self.reviewer, "fixer": self.fixer, "cost_usd": self.cost_usd,
                "history": [{"round": r.round, "verdict": r.verdict, "comments": len(r.comments),
                             "malformed": r.malformed} for r in self.rounds]}


@dataclass(frozen=True)
class TaskRecord:
    """Everything known about one finished attempt; written as evidence and returned to the engine."""

    run_id: str
    task_id: str
    attempt: int
    ok: bool
    branch: str
    base_sha: str
    commit_sha: str | None
    files_changed: list[str]
    deviations: list[str]
    contract_violations: list[str]
    verify: VerifyResult | None
    agent: dict[str, Any]
    error: str = ""
    transient: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0
    dependencies: list[str] = field(default_factory=list)
    # What the agent tried that was refused or lay outside its work tree, and what it did to its own
    # workspace repository: reported, never silently dropped.
    incidents: list[str] = field(default_factory=list)
    # The typed outcome the engine acts on (no string compares on the evidence dict).
    profile: str = ""
    error_kind: ErrorKind | None = None  # why the agent failed, when it did
    session_id: str | None = None
    cost_usd: float | None = None
    retry_after: float | None = None  # seconds the provider asked to wait
    rehearsal: bool = False  # the agent talked to plait's scripted model server: no tokens were spent
    review: ReviewRecord | None = None  # None: the task is not reviewed (or failed before its review)
    # The workspace's environment (docs/environment.md): ports, slot, copied files, caches, setup and teardown.
    environment: dict[str, Any] | None = None
    files_deleted: list[str] = field(default_factory=list)  # those of `files_changed` the task deleted


def context_doc(record: TaskRecord, task: Task, plan: Plan, summary: str) -> dict[str, Any]:
    dependents = [t.id for t in plan.tasks if task.id in t.needs]
    pending = [f"review out-of-scope change to {p}" for p in record.deviations]
    pending += [f"review: {i}" for i in record.incidents]
    if record.review and not record.review.approved and record.review.rounds:
        pending += [f"review comment: {c}" for c in record.review.rounds[-1].comments]
    stated = summary_statements(str(record.agent.get("summary") or ""))
    pending += stated["PENDING"]
    if not record.ok:
        pending.insert(0, f"fix: {record.error}")
    return {
        "version": CONTEXT_VERSION,
        "workflow_id": f"{record.run_id}-{task.id}",
        "parent_workflow_id": record.run_id,
        "task_id": task.id,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.finished_at or time.time())),
        "current_agent": record.agent.get("profile"),
        "next_agent": None,
        "next_tasks": dependents,
        "phase": "task-complete" if record.ok else "task-failed",
        "branch": record.branch,
        "commit": record.commit_sha,
        "files_modified": record.files_changed,
        "decisions": list(record.agent.get("decisions", [])) + stated["DECISION"],
        "pending_actions": pending,
        "contract_assumptions": stated["ASSUMES"],
        "provides": stated["PROVIDES"],
        "acceptance_criteria": task.acceptance,
        "verification": asdict(record.verify) if record.verify else None,
        "review": record.review.summary() if record.review else None,
        "context_summary": summary,
    }


def summary_of(record: TaskRecord, task: Task) -> str:
    parts = [f"{task.title}."]
    if record.files_changed:
        parts.append(f"Changed {len(record.files_changed)} file(s): {', '.join(record.files_changed[:12])}.")
    if record.agent.get("summary"):
        parts.append(f"Agent: {str(record.agent['summary'])[:400].rstrip('.')}.")
    if record.verify and record.verify.command:
        parts.append(f"Verify `{record.verify.command}` {'passed' if record.verify.ok else 'failed'}.")
    if record.review and record.review.approved:
        parts.append(f"Review approved after {len(record.review.rounds)} round(s).")
    if not record.ok:
        parts.append(f"Failed: {record.error}")
    return " ".join(parts)


def write_evidence(folder: Path, record: TaskRecord, task: Task, plan: Plan) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    summary = summary_of(record, task)
    context = context_doc(record, task, plan, summary)
    write_text(folder / "context.json", json.dumps(context, indent=2) + "\n")
    write_text(folder / "results.json", json.dumps(asdict(record), indent=2, default=str) + "\n")
    write_text(folder / "deviations.md", _deviations_md(record, task))
    write_text(folder / "EVIDENCE.md", _evidence_md(record, task, summary))
    return context


def _deviations_md(record: TaskRecord, task: Task) -> str:
    lines = [f"# Deviations — {task.id}", ""]
    if not task.files:
        lines.append("The task declared no `files`, so no change counts as out of scope.")
    if record.deviations:
        lines.append("Changed outside the declared scope (`files`):")
        lines += [f"- `{p}`" for p in record.deviations]
    if record.contract_violations:
        lines += ["", "Changed frozen contracts owned by another task (this fails the task):"]
        lines += [f"- `{p}`" for p in record.contract_violations]
    if record.incidents:
        lines += ["", "What the agent tried outside its workspace, or did to its workspace repository:"]
        lines += [f"- {i}" for i in record.incidents]
    if len(lines) == 2:
        lines.append("None: every change is inside the declared scope.")
    return "\n".join(lines) + "\n"


def _usage_line(agent: dict[str, Any], rehearsal: bool) -> str:
    tokens = agent.get("tokens") or {}
    cost = agent.get("cost_usd")
    spent = f"${cost:.4f}" if cost is not None else "not reported"
    if rehearsal:
        spent = f"simulated {spent} (rehearsal: no tokens were spent)"
    return (f"- Cost: {spent}; tokens in {tokens.get('input', 0)}, "
            f"out {tokens.get('output', 0)}, cached {tokens.get('cached', 0)}; turns {agent.get('turns') or '?'}")


def _cost(cost: float | None) -> str:
    return f"${cost:.4f}" if cost is not None else "cost not reported"


def _review_md(review: ReviewRecord, rehearsal: bool) -> list[str]:
    state = "approved" if review.approved else "NOT approved: needs a human"
    out = [f"{state} after {len(review.rounds)} of at most {review.max_rounds} round(s); reviewer "
           f"`{review.reviewer}`, fixer `{review.fixer}`; {'simulated ' if rehearsal else ''}{_cost(review.cost_usd)}"]
    for r in review.rounds:
        out += ["", f"### Round {r.round}: {r.verdict.replace('_', ' ')}"
                + (" (no readable verdict)" if r.malformed else "")
                + f" — `{r.commit[:12]}`, reviewer {_cost(r.reviewer_cost_usd)}"]
        out += [f"- {c}" for c in r.comments]
        if r.fixer_summary or r.fixer_cost_usd is not None:
            out += [f"- fixer ({_cost(r.fixer_cost_usd)}): {r.fixer_summary or 'no summary'}"]
    return out


def _environment_md(env: dict[str, Any]) -> list[str]:
    out = [f"- Slot: `{env.get('slot')}`"]
    if env.get("ports"):
        out.append("- Ports: " + ", ".join(f"{n} {p}" for n, p in env["ports"].items()))
    if env.get("copied"):
        out.append("- Copied from your checkout: " + ", ".join(f"`{c}`" for c in env["copied"]))
    for c in env.get("caches", []):
        how = "built" if c.get("built") else "shared"
        out.append(f"- Cache `{c['path']}`: {how} (key {c['key']}) in {c['seconds']:.1f}s")
    for kind in ("setup", "teardown"):
        for step in env.get(kind, []):
            state = "timed out" if step.get("timed_out") else f"exit {step.get('exit_code')}"
            out += ["", f"{kind} `{step['command']}` — {state} in {step['seconds']:.1f}s", "", "```",
                    str(step.get("output_tail", "")).strip()[-1500:], "```"]
    return out


def _evidence_md(record: TaskRecord, task: Task, summary: str) -> str:
    v = record.verify
    verdict = "PASSED" if record.ok else "FAILED"
    out = [
        f"# Evidence — {task.id}: {task.title}",
        "",
        f"**Result: {verdict}** (attempt {record.attempt}, run `{record.run_id}`"
        + (", a rehearsal against plait's scripted model server)" if record.rehearsal else ")"),
        "",
        f"- Branch: `{record.branch}` at `{record.commit_sha or '(no commit)'}`, based on `{record.base_sha[:12]}`",
        f"- Agent: `{record.agent.get('profile')}` — {record.agent.get('summary') or 'no summary'}",
        f"- Ran: `{record.agent.get('binary') or record.agent.get('adapter')}`"
        + (f" ({record.agent['version']})" if record.agent.get("version") else ""),
        f"- Time: {record.finished_at - record.started_at:.1f}s",
        _usage_line(record.agent, record.rehearsal),
        "",
        "## What was built",
        "",
        summary,
        "",
        "## Files changed",
        "",
    ]
    out += [f"- `{p}`" for p in record.files_changed] or ["(none)"]
    out += ["", "## Verification", ""]
    if v is None or v.command is None:
        out.append("No verify command: nothing proves this task works beyond the agent's word.")
    else:
        state = "timed out" if v.timed_out else f"exit {v.exit_code}"
        out += [f"`{v.command}` — {state} in {v.seconds:.1f}s", "", "```", v.output_tail.strip()[-3000:], "```"]
    if record.environment:
        out += ["", "## Environment", "", *_environment_md(record.environment)]
    if task.acceptance:
        out += ["", "## Acceptance criteria", ""] + [f"- {a}" for a in task.acceptance]
    if record.review:
        out += ["", "## Review", "", *_review_md(record.review, record.rehearsal)]
    out += ["", "## Deviations", ""]
    out += [f"- out of scope: `{p}`" for p in record.deviations]
    out += [f"- contract violation: `{p}`" for p in record.contract_violations]
    out += [f"- incident: {i}" for i in record.incidents]
    if not record.deviations and not record.contract_violations and not record.incidents:
        out.append("None.")
    if record.error:
        out += ["", "## Error", "", record.error]
    return "\n".join(out) + "\n"


def read_json(path: Path) -> dict[str, Any]:
    """An evidence file (results.json, context.json…) as a mapping; {} when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}

"""Agents at integration, each judged by the tests, never trusted on their word (seeds 000, 001, 004).

- The **resolver**: a task's work conflicts with what was merged before it. It gets a workspace holding
  that merge with conflict markers, both sides' tasks and context, and rounds to resolve it. A round is
  accepted only when no marker is left in the conflicted files and every involved task's verify command
  passes on the result; the integration test then judges the whole. plait itself never picks a side.
- The **integration engineer**: the merged tree fails the integration test though every stream passed
  alone (a semantic conflict). It works on the integration result with the failing output and every
  stream's context, in rounds judged by the full test command. What it changed is reported, never hidden.
- The **end review** (`review: end`): a reviewer reads the whole integrated change and a fixer works on the
  integration result, the loop of plait.run.review with the full test command as verification.

Each works in a workspace of its own (plait.git.workspace) under the run's integration folder, in the
agents' sandbox; only plait moves a ref, to a commit it made from what the agent left.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from plait.agents.base import AgentRequest, AgentResult, ErrorKind, Permission, Profile
from plait.evidence import ReviewRecord, VerifyResult, read_json
from plait.git import merge, workspace
from plait.git.repo import GitError
from plait.plan.model import Plan, Script, Task
from plait.redact import redact_files, register_env
from plait.run import environment, review
from plait.run.prompts import document_sections, fenced, opening, task_sections
from plait.run.task import (
    RunContext,
    _run_agent,
    confinement,
    run_verify,
    short,
    spares,
    verify_environment,
    workspace_env,
)
from plait.state import EventKind
from plait.text import clip, printable

Emit = Callable[..., Any]
MARKER = re.compile(rb"^(<{7}|>{7})( |$)", re.M)
TEST_PATH = re.compile(r"(^|/)(tests?|__tests__|spec)/|(^|/)test_[^/]*$|_test\.[^/]+$|\.(test|spec)\.[^/]+$")
OUTPUT_CHARS = 6000  # of a failing command's output, in a prompt


@dataclass
class Round:
    """One round of a resolver or an integration engineer."""

    round: int
    ok: bool  # its result was accepted
    summary: str  # the agent's own account
    files: list[str]  # what it changed
    problem: str = ""  # why the result was not accepted
    cost_usd: float | None = None
    seconds: float = 0.0


@dataclass
class Mend:
    """An agent's work on the integration: a conflict resolved, or a failing integration test repaired."""

    kind: str  # "conflict" or "integration-test"
    role: str
    profile: str
    task: str | None = None  # a conflict: the task whose work conflicts
    partners: list[str] = field(default_factory=list)  # ... and the tasks it conflicts with
    files: list[str] = field(default_factory=list)  # the conflicted files; a repair: the files it changed
    rounds: list[Round] = field(default_factory=list)
    ok: bool = False
    commit: str | None = None
    error: str = ""

    @property
    def changed(self) -> list[str]:
        return sorted({f for r in self.rounds for f in r.files})

    @property
    def test_files(self) -> list[str]:
        """Test files it changed: worth a human's look, since an agent judged by tests changed tests."""
        return [f for f in self.changed if TEST_PATH.search(f)]

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(changed=self.changed, test_files=self.test_files,
                   cost_usd=total([r.cost_usd for r in self.rounds]))
        return doc


def total(costs: Sequence[float | None]) -> float | None:
    known = [c for c in costs if c is not None]
    return round(sum(known), 6) if known else None


class Bench:
    """A workspace at `base` where integration agents work: run an agent, capture, run commands. It is
    also plait.run.review's `Work` for the end review (verification = the integration test)."""

    def __init__(self, ctx: RunContext, name: str, base: str, cancel: threading.Event, emit: Emit,
                 subject: str = "integration") -> None:
        self.ctx, self.name, self.cancel, self.emit = ctx, name, cancel, emit
        self.subject = subject  # the agents' task id: the conflicting task's for a resolver
        folder = ctx.paths.integration_folder
        # A finished task's work tree reset to `base`, when one is left: no checkout of every file at the run's end.
        self.ws = workspace.create(ctx.git, folder / name, folder / "home", base, f"plait/{ctx.paths.run_id}/{name}",
                                   spares(ctx.paths))
        self.log_dir = ctx.paths.run_dir / "integration" / name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.last_dir = self.log_dir
        self.head = base  # the last captured commit
        self.default = ctx.profiles.get(ctx.plan.defaults.agent)
        self.incidents: list[str] = []
        self.env = self._environment()  # the plan's copied files and caches (docs/environment.md)

    def _environment(self) -> environment.AttemptEnvironment | None:
        ctx = self.ctx
        where = environment.Where(
            repo_root=ctx.paths.repo_root, cache_root=environment.cache_root(ctx.paths.workspaces), tree=self.ws.tree,
            home=self.ws.home, tmp=self.ws.tmp, log_dir=self.log_dir, timeout=self.plan.defaults.timeout,
            cancel=self.cancel, base_env=ctx.verify_env or verify_environment(),
            landlock=confinement(ctx, self.default, self.ws, agent=False).landlock)
        env, problem = environment.shared_files(self.plan, where, f"plait-{ctx.paths.run_id}-{self.name}".lower())
        if problem:
            self.incidents.append(f"environment: {short(problem, 500)}")
        return env

    @property
    def plan(self) -> Plan:
        return self.ctx.plan

    def call(self, role: str, profile: Profile, prompt: str, label: str, script: Script | None = None) -> AgentResult:
        ctx, ws = self.ctx, self.ws
        log_dir = self.log_dir / label
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "prompt.md").write_text(prompt)
        self.last_dir = log_dir
        env = workspace_env(ctx.agent_env(profile, f"integration/{self.name}/{label}"), ws, home=True)
        register_env(env)
        request = AgentRequest(self.subject, prompt, ws.tree, log_dir, profile, self.plan.defaults.timeout,
                               env, script=script, cancel=self.cancel, home=ws.home,
                               confine=confinement(ctx, profile, ws, agent=True), role=role)
        try:
            result = _run_agent(ctx.make_agent(profile), request)
        finally:
            redact_files(log_dir)
        self.incidents += [f"{role}: refused or outside its work tree: {short(b, 500)}" for b in result.blocked]
        return result

    def capture_all(self, message: str) -> workspace.Capture:
        """Commit the work tree on the workspace's base (everything the agents changed so far)."""
        with environment.hidden(self.env, self.ws.folder / "environment-aside"):
            return workspace.capture(self.ctx.git, self.ws, message)

    def run_commands(self, commands: Sequence[str | None]) -> list[VerifyResult]:
        """Each command in the workspace, confined like the agents; stops at the first that fails."""
        out: list[VerifyResult] = []
        for i, command in enumerate(dict.fromkeys(c for c in commands if c)):
            log_dir = self.last_dir / f"verify-{i + 1}" if i else self.last_dir
            log_dir.mkdir(parents=True, exist_ok=True)
            result = run_verify(command, self.ws.tree, log_dir, self.plan.defaults.timeout, self.cancel,
                                workspace_env(self.ctx.verify_env or verify_environment(), self.ws, home=False),
                                confinement(self.ctx, self.default, self.ws, agent=False))
            out.append(result)
            if not result.ok:
                break
        redact_files(self.log_dir)
        return out

    # -- plait.run.review's Work, for the end review ---------------------------------------------------
    def run_role(self, role: str, profile: Profile, prompt: str, label: str) -> AgentResult:
        script = self.plan.integration.script
        fix = Script.model_validate({"write": script.fix}) if script and role == "fixer" else None
        return self.call(role, profile, prompt, f"end-{label}", fix)  # end-review-1, end-fix-1...

    def capture(self) -> tuple[str | None, str | None]:
        try:
            self.head = self.capture_all(f"[plait {self.ctx.paths.run_id}] end review: fixes").commit
        except (workspace.WorkspaceGone, GitError) as exc:
            return None, f"capture: {exc}"
        return self.head, None

    def verify(self) -> VerifyResult:
        (result,) = self.run_commands([self.plan.integration.verify]) or [VerifyResult(None, None, 0.0, "")]
        return result

    def diff(self, commit: str) -> str:
        return review.change_diff(self.ctx.git, self.ctx.base_sha, commit)  # the whole run's change

    def tree_state(self) -> str:
        with environment.hidden(self.env, self.ws.folder / "environment-aside"):
            return workspace.tree_state(self.ctx.git, self.ws)

    def put_back(self, tree: str) -> list[str]:
        with environment.hidden(self.env, self.ws.folder / "environment-aside"):
            changed = workspace.put_back(self.ctx.git, self.ws, tree)
        if changed:
            self.incidents.append(f"end review: the reviewer changed {', '.join(changed[:10])} (a reviewer only "
                                  "reads): put back")
        return changed

    def report(self, kind: EventKind, data: dict[str, Any], record: ReviewRecord) -> None:
        names = {EventKind.TASK_REVIEWING: EventKind.INTEGRATION_REVIEWING,
                 EventKind.TASK_REVIEWED: EventKind.INTEGRATION_REVIEWED,
                 EventKind.TASK_FIXED: EventKind.INTEGRATION_FIXED}
        self.emit(names.get(kind, kind), None, {**data, "review": record.summary()})


def rounds_for(plan: Plan) -> int:
    return plan.integration.max_rounds or plan.defaults.max_rounds


def context_of(ctx: RunContext, task_id: str) -> Mapping[str, Any]:
    return read_json(ctx.paths.task_dir(task_id) / "context.json")


def stream_sections(ctx: RunContext, task_ids: Sequence[str], commits: Mapping[str, str]) -> list[str]:
    """What each stream set out to do and says it did: its task, its files, its context summary."""
    lines: list[str] = []
    for tid in task_ids:
        task, doc = ctx.plan.task(tid), context_of(ctx, tid)
        lines += ["#" + line if line.startswith("#") else line for line in task_sections(ctx.plan, task)]
        changed = ctx.git.run("diff", "--name-only", "--no-renames", ctx.base_sha, commits[tid]).split()
        lines += ["### Files it changed", *[f"- {f}" for f in changed[:50]], ""]
        summary = str(doc.get("context_summary") or "").strip()
        if summary:
            lines += ["### What its agent said it did", clip(summary, 3000), ""]
    return lines


def _failure(results: Sequence[VerifyResult]) -> str:
    bad = next((r for r in results if not r.ok), None)
    if bad is None:
        return ""
    why = "timed out" if bad.timed_out else f"exited {bad.exit_code}"
    return f"`{bad.command}` {why}"


def _output(results: Sequence[VerifyResult]) -> str:
    bad = next((r for r in results if not r.ok), None)
    return clip(bad.output_tail, OUTPUT_CHARS, keep="end") if bad else ""


def _agent_failed(result: AgentResult, profile: Profile) -> str:
    kind = result.error_kind or ErrorKind.UNKNOWN
    return f"agent {profile.name}: {kind.value}: {short(result.error_message, 500)}"


# -- the resolver ----------------------------------------------------------------------------------------
def resolve_conflict(ctx: RunContext, current: str, conflict: merge.Conflict, commits: Mapping[str, str],
                     emit: Emit, cancel: threading.Event) -> Mend:
    """Rounds of the resolver on `conflict` (its task's work against `current`, the merge so far). On
    success `commit` is the two-parent merge of `current` and the task's commit with the resolved tree."""
    git, plan, tid = ctx.git, ctx.plan, conflict.name.rsplit("/", 1)[-1]
    task = plan.task(tid)
    profile = ctx.profiles.get("resolver") or ctx.profiles[plan.agent_for(task, ctx.profiles)]
    partners = [p.rsplit("/", 1)[-1] for p in conflict.conflicts_with]
    mend = Mend("conflict", "resolver", profile.name, tid, partners, list(conflict.files))
    marked = merge.commit_tree(git, merge.conflicted_tree(git, current, conflict.sha), [current],
                               f"[plait {ctx.paths.run_id}] {tid}: conflicted merge (markers)")
    bench = Bench(ctx, f"resolve-{tid}", marked, cancel, emit, subject=tid)
    commands = [plan.verify_for(plan.task(t)) for t in [tid, *partners]]
    script = Script.model_validate({"write": task.script.resolve}) if task.script and task.script.resolve else None
    problem = ""
    for n in range(1, rounds_for(plan) + 1):
        if cancel.is_set():
            mend.error = "cancelled"
            break
        emit(EventKind.INTEGRATION_RESOLVING, None, {"task": tid, "with": partners, "files": mend.files, "round": n,
                                                     "profile": profile.name})
        started = time.time()
        prompt = resolver_prompt(ctx, mend, commits, commands, n, problem)
        result = bench.call("resolver", profile, prompt, f"round-{n}", script)
        if not result.ok:
            mend.error = _agent_failed(result, profile)
            mend.rounds.append(Round(n, False, short(result.summary, 2000), [], mend.error, result.cost_usd,
                                     round(time.time() - started, 3)))
            break
        captured = bench.capture_all(f"[plait {ctx.paths.run_id}] {tid}: conflict resolved")
        files = [p for _, p in captured.changed]
        left = [f for f in mend.files if MARKER.search(_read(bench.ws.tree / f))]
        results: list[VerifyResult] = [] if left else bench.run_commands(commands)
        problem = (f"conflict markers are still in {', '.join(left)}" if left else _failure(results))
        detail = problem + (f"\n{_output(results)}" if _output(results) else "")
        mend.rounds.append(Round(n, not problem, short(result.summary, 2000), files, short(detail, 2000),
                                 result.cost_usd, round(time.time() - started, 3)))
        if not problem:
            mend.ok = True
            mend.commit = merge.commit_tree(git, git.tree_of(captured.commit), [current, conflict.sha],
                                            f"[plait {ctx.paths.run_id}] integrate: merge {conflict.name} "
                                            f"(conflict in {', '.join(mend.files[:5])} resolved by the resolver)")
            break
        problem = detail
    else:
        mend.error = f"still failing after {rounds_for(plan)} round(s): {mend.rounds[-1].problem.splitlines()[0]}"
    emit(EventKind.INTEGRATION_RESOLVED, None, {"task": tid, "with": partners, "files": mend.files, "ok": mend.ok,
                                                "rounds": len(mend.rounds), "error": mend.error,
                                                "cost_usd": total([r.cost_usd for r in mend.rounds])})
    if mend.ok:
        workspace.remove(bench.ws.folder)
    return mend


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes() if path.is_file() and not path.is_symlink() else b""
    except OSError:
        return b""


def resolver_prompt(ctx: RunContext, mend: Mend, commits: Mapping[str, str], commands: Sequence[str | None],
                    n: int, problem: str) -> str:
    tid = mend.task or ""
    others = ", ".join(mend.partners) or "the work merged before it"
    lines = opening("resolver", None, ctx.paths.repo_root) + document_sections(ctx.docs)
    lines += ["# The conflict", f"Task {tid}'s work conflicts with {others} in:", *[f"- {f}" for f in mend.files],
              "", "Your working directory holds their merge. In each file above, the lines between `<<<<<<<` and "
              f"`=======` are what was merged before ({others}); the lines between `=======` and `>>>>>>>` are "
              f"{tid}'s. Make each file do what both sides meant, and remove every marker line.", ""]
    lines += ["# The two sides", "", *stream_sections(ctx, [*mend.partners, tid], commits)]
    checks = [c for c in dict.fromkeys(commands) if c]
    lines += ["# How your result is judged",
              *([f"plait runs {', '.join(f'`{c}`' for c in checks)} in this directory,"] if checks else []),
              "then the full integration test runs on the whole integration. Taking one side and dropping the "
              "other's work fails those tests.", ""]
    if problem:
        lines += [f"# Round {n} of {rounds_for(ctx.plan)}: your previous result was not accepted", fenced(problem), ""]
    lines += ["End with a short summary: each conflict and how you resolved it.", ""]
    return "\n".join(lines)


# -- the integration engineer -----------------------------------------------------------------------------
def repair(bench: Bench, failing: VerifyResult, commits: Mapping[str, str], order: Sequence[str],
           emit: Emit) -> tuple[Mend, VerifyResult]:
    """Rounds of the integration engineer on the integration result in `bench`, each judged by the full
    test command. Returns the record and the last integration test result."""
    ctx, plan = bench.ctx, bench.plan
    profile = ctx.profiles.get("integration-engineer") or ctx.profiles[plan.defaults.agent]
    mend = Mend("integration-test", "integration-engineer", profile.name)
    verify = failing
    for n in range(1, rounds_for(plan) + 1):
        if bench.cancel.is_set():
            mend.error = "cancelled"
            break
        emit(EventKind.INTEGRATION_REPAIRING, None, {"round": n, "profile": profile.name, "command": verify.command})
        started = time.time()
        result = bench.call("integration-engineer", profile, engineer_prompt(ctx, verify, commits, order, n),
                            f"repair-{n}", plan.integration.script)
        if not result.ok:
            mend.error = _agent_failed(result, profile)
            mend.rounds.append(Round(n, False, short(result.summary, 2000), [], mend.error, result.cost_usd,
                                     round(time.time() - started, 3)))
            break
        before = bench.head
        captured = bench.capture_all(f"[plait {ctx.paths.run_id}] integration engineer: make the integration test "
                                     "pass")
        bench.head = captured.commit
        files = _changed(ctx, before, captured.commit)
        (verify,) = bench.run_commands([plan.integration.verify])
        problem = "" if verify.ok else _failure([verify])
        mend.rounds.append(Round(n, verify.ok, short(result.summary, 2000), files, problem, result.cost_usd,
                                 round(time.time() - started, 3)))
        if verify.ok:
            mend.ok, mend.commit = True, captured.commit
            break
    else:
        mend.error = f"the integration test still fails after {rounds_for(plan)} round(s)"
    mend.files = mend.changed
    emit(EventKind.INTEGRATION_REPAIRED, None, {"ok": mend.ok, "rounds": len(mend.rounds), "files": mend.changed,
                                                "test_files": mend.test_files, "error": mend.error,
                                                "cost_usd": total([r.cost_usd for r in mend.rounds])})
    return mend, verify


def _changed(ctx: RunContext, before: str, after: str) -> list[str]:
    if before == after:
        return []
    return [p for p in ctx.git.run("diff", "--name-only", "--no-renames", "-z", before, after).split("\0") if p]


def engineer_prompt(ctx: RunContext, verify: VerifyResult, commits: Mapping[str, str], order: Sequence[str],
                    n: int) -> str:
    why = "timed out" if verify.timed_out else f"exits {verify.exit_code}"
    lines = opening("integration-engineer", None, ctx.paths.repo_root) + document_sections(ctx.docs)
    lines += ["# The failure",
              "Every task passed its own verification and their work is merged in your working directory, "
              f"but the integration test `{verify.command}` {why} on the merged result. The end of its output:",
              fenced(clip(verify.output_tail, OUTPUT_CHARS, keep="end") or "(no output)"), ""]
    lines += ["# The streams of work", "", *stream_sections(ctx, list(order), commits)]
    lines += [f"# Your job (round {n} of {rounds_for(ctx.plan)})",
              f"Make `{verify.command}` pass with the smallest change that keeps every task's intent. Do not delete "
              "or weaken tests to get there: plait reports every test file you change. End with a summary: what "
              "failed, why, and what you changed in which files.", ""]
    return "\n".join(lines)


# -- the end review -------------------------------------------------------------------------------------
def whole_plan(plan: Plan, order: Sequence[str]) -> Task:
    """The end review's subject: the whole plan as one task (every task's acceptance criteria)."""
    acceptance = [f"{t}: {a}" for t in order for a in plan.task(t).acceptance]
    prompt = "All the plan's tasks, integrated:\n" + "\n".join(f"- {t}: {plan.task(t).title}" for t in order)
    return Task.model_validate({"id": "integration", "title": f"the whole plan ({plan.name})", "prompt": prompt,
                                "acceptance": acceptance, "verify": plan.integration.verify,
                                "max_rounds": plan.integration.max_rounds})


def end_review(bench: Bench, verify: VerifyResult, order: Sequence[str]) -> review.Outcome:
    ctx, plan = bench.ctx, bench.plan
    reviewer, fixer = review.profiles_for(ctx.profiles, ctx.profiles[plan.defaults.agent])
    job = review.Job(plan, whole_plan(plan, order), ctx.docs, ctx.paths.repo_root, reviewer, fixer, bench.head, verify)
    return review.review_and_fix(bench, job)


# -- the integration verifier -----------------------------------------------------------------------------
MARKS_FORMAT = '{"concerns": [{"n": 1, "status": "aligned", "reason": "<file>:<line>: why"}]}'
_STATUSES = {"aligned": "aligned", "not aligned": "not aligned", "not_aligned": "not aligned",
             "misaligned": "not aligned"}


def check_concerns(bench: Bench, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The project's `integration-verifier` profile reads the integrated code (read-only) and marks each
    concern aligned or not aligned; a concern it does not mark keeps plait's mark (`marked_by: plait`)."""
    ctx = bench.ctx
    profile = replace(ctx.profiles["integration-verifier"], permission=Permission.READ_ONLY)
    lines = opening("integration-verifier", None, ctx.paths.repo_root) + document_sections(ctx.docs)
    lines += ["# The concerns", ""]
    for n, c in enumerate(found, start=1):
        lines += [f"{n}. {c['assumer']} assumes: {c['assumption']}",
                  f"   provider: {c.get('provider') or '(no task states it provides this)'}"
                  + (f"; it states: {c['provided']}" if c.get("provided") else ""),
                  f"   plait's reading of the statements alone: {c['status']} ({c['reason']})"]
    lines += ["", "# Your answer", "End with exactly one JSON object marking each concern by its number:",
              MARKS_FORMAT, ""]
    before = bench.tree_state()
    result = bench.call("integration-verifier", profile, "\n".join(lines), "verifier")
    bench.put_back(before)
    marks = parse_marks(result.summary) if result.ok else {}
    out = []
    for n, c in enumerate(found, start=1):
        if n in marks:
            status, reason = marks[n]
            out.append({**c, "status": status, "reason": reason, "marked_by": "integration-verifier"})
        else:
            out.append({**c, "marked_by": "plait"})
    marked = sum(1 for c in out if c["marked_by"] != "plait")
    bench.emit(EventKind.INTEGRATION_CONCERNS, None, {"profile": profile.name, "ok": result.ok,
                                                      "marked": marked, "concerns": len(found),
                                                      "cost_usd": result.cost_usd})
    return out


def parse_marks(text: str) -> dict[int, tuple[str, str]]:
    """{concern number: (status, reason)} from the last JSON object with a `concerns` list; never raises."""
    found = review.verdict_object(text, key="concerns")
    items = found.get("concerns") if found else None
    marks: dict[int, tuple[str, str]] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("n"), int):
            status = _STATUSES.get(str(item.get("status", "")).strip().lower())
            if status:
                marks[item["n"]] = (status, clip(printable(str(item.get("reason") or "")), 1000))
    return marks

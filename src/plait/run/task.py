"""One attempt of one task: workspace -> sandboxed agent -> capture -> verify -> evidence.

Runs on a worker thread. It never decides the run's fate: it returns a TaskRecord and the engine
schedules retries, blocks dependents and integrates.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait import proc
from plait.agents.base import Agent, AgentRequest, AgentResult, ErrorKind, Permission, Profile, SandboxMode
from plait.evidence import TaskRecord, VerifyResult, write_evidence
from plait.git import merge, workspace
from plait.git.repo import Git, GitError
from plait.plan.analyze import patterns_overlap
from plait.plan.model import Plan, Task
from plait.redact import redact, redact_files, register_env
from plait.run import scrutiny
from plait.sandbox import Confinement
from plait.state import EventKind
from plait.text import clip, printable

Emit = Callable[..., Any]
log = logging.getLogger("plait.run")

# What one agent message (summary, error) may take in evidence and the database; the logs keep it all.
EVIDENCE_CHARS = 4000


def short(text: str, limit: int = EVIDENCE_CHARS) -> str:
    """Agent or command text fit for evidence: secrets masked, bounded, no control characters."""
    return clip(printable(redact(text)), limit, "full text in the attempt's logs")


@dataclass(frozen=True)
class RunPaths:
    repo_root: Path
    run_id: str
    workspaces: Path  # this run's workspaces, outside the user's checkout by default

    @property
    def plait_dir(self) -> Path:
        return self.repo_root / ".plait"

    @property
    def run_dir(self) -> Path:
        return self.plait_dir / "runs" / self.run_id

    def task_dir(self, task_id: str) -> Path:
        return self.run_dir / "tasks" / task_id

    def attempt_folder(self, task_id: str, attempt: int) -> Path:
        return self.workspaces / task_id / f"a{attempt}"

    def home(self, task_id: str) -> Path:
        return self.workspaces / task_id / "home"

    @property
    def integration_folder(self) -> Path:
        return self.workspaces / "_integration"  # task ids start with a letter or digit

    def branch(self, task_id: str) -> str:
        return f"plait/{self.run_id}/{task_id}"


@dataclass(frozen=True)
class RunContext:
    plan: Plan
    git: Git
    paths: RunPaths
    base_sha: str
    profiles: Mapping[str, Profile]
    make_agent: Callable[[Profile], Agent]
    agent_env: Callable[[Profile, str], dict[str, str]]  # (profile, task id) -> the agent's environment
    verify_env: Mapping[str, str] = field(default_factory=dict)
    landlock: bool = False  # the kernel can confine writes (sandbox.support())
    protected: tuple[str, ...] = ("plait.toml",)  # repo paths a task may not delete: plait's plan and config
    rehearsal: bool = False  # agents talk to plait's scripted model server: costs are simulated


def verify_environment() -> dict[str, str]:
    """The user's own test command runs with the user's environment, minus git's internals."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def build_prompt(plan: Plan, task: Task, dep_contexts: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [f"# Task {task.id}: {task.title}", "", task.prompt.strip(), ""]
    if task.acceptance:
        lines += ["## Acceptance criteria", *[f"- {a}" for a in task.acceptance], ""]
    if task.files:
        lines += ["## Scope", "Change only these paths (changes elsewhere are reported as deviations):",
                  *[f"- {f}" for f in task.files], ""]
    frozen = [c for c in plan.contracts if c.owner != task.id]
    if frozen:
        lines += ["## Frozen contracts (do not change)", *[f"- {c.path} (owned by {c.owner})" for c in frozen], ""]
    if dep_contexts:
        lines += ["## What the tasks you build on did (their work is already in your worktree)"]
        lines += [f"- {dep}: {ctx.get('context_summary', '')}" for dep, ctx in dep_contexts.items()]
        lines.append("")
    verify = plan.verify_for(task)
    if verify:
        lines += ["## Verification", f"plait runs `{verify}` in this worktree when you finish; make it pass.", ""]
    return "\n".join(lines)


def out_of_scope(changed: list[str], scope: list[str]) -> list[str]:
    if not scope:
        return []
    return [p for p in changed if not any(patterns_overlap(p, s) for s in scope)]


def contract_violations(plan: Plan, task: Task, changed: list[str]) -> list[str]:
    return sorted({p for c in plan.contracts if c.owner != task.id for p in changed if patterns_overlap(p, c.path)})


def prepare_workspace(ctx: RunContext, task: Task, attempt: int,
                      dep_commits: Mapping[str, str]) -> workspace.Workspace:
    """A fresh workspace for this attempt, its base being the task's dependencies' work merged."""
    git, paths = ctx.git, ctx.paths
    if dep_commits:
        heads = [(paths.branch(d), sha) for d, sha in dep_commits.items()]
        merged = merge.merge_commits(git, ctx.base_sha, heads, f"[plait {paths.run_id}] base for {task.id}")
        if merged.conflict is not None:
            raise TaskError(f"its dependencies do not merge: {merged.conflict}", transient=False)
        base = merged.commit
    else:
        base = ctx.base_sha
    # Earlier attempts' workspaces go: nothing they left (or anything still writing) can reach this one.
    for old in range(1, attempt):
        workspace.remove(paths.attempt_folder(task.id, old))
    ref = f"refs/heads/{paths.branch(task.id)}"
    old_sha = git.rev_parse(ref)
    if old_sha is not None:  # a failed earlier attempt: the branch starts again from the base
        git.delete_ref(ref, old_sha)
    return workspace.create(git, paths.attempt_folder(task.id, attempt), paths.home(task.id), base,
                            paths.branch(task.id))


class TaskError(Exception):
    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def confinement(ctx: RunContext, profile: Profile | None, ws: workspace.Workspace, agent: bool) -> Confinement:
    """The sandbox for an attempt's processes: writes confined unless the profile turned it off or the
    kernel cannot (the run said so when it started); processes always end with the attempt. A
    read-only profile's agent cannot write its work tree either (its verify command can)."""
    off = profile is not None and profile.sandbox is SandboxMode.OFF
    read_only = agent and profile is not None and profile.permission is Permission.READ_ONLY
    writable = tuple(p for p in ws.writable if not (read_only and p == ws.tree))
    return Confinement(writable=writable, landlock=ctx.landlock and not off)


def workspace_env(env: Mapping[str, str], ws: workspace.Workspace, home: bool) -> dict[str, str]:
    """`env` pointed at the workspace's private folders; git never walks up out of the workspace."""
    out = dict(env)
    out.update(TMPDIR=str(ws.tmp), GIT_CEILING_DIRECTORIES=str(ws.folder))
    if home:
        out["HOME"] = str(ws.home)
    else:  # the user's test command keeps the user's HOME to read; caches go somewhere writable
        out["XDG_CACHE_HOME"] = str(ws.home / ".cache")
    return out


def run_attempt(
    ctx: RunContext,
    task: Task,
    attempt: int,
    dep_commits: Mapping[str, str],
    dep_contexts: Mapping[str, Mapping[str, Any]],
    cancel: threading.Event,
    emit: Emit,
    resume: tuple[str, str] | None = None,
) -> TaskRecord:
    """One attempt. `resume` = (agent session id, the workspace's base) continues an interrupted agent
    in the previous attempt's workspace (whose processes have all ended).

    Never raises: an exception from any stage (an adapter, git, a parser) becomes a failed attempt
    with its evidence and a message, here, in one place; the traceback goes to the attempt's log."""
    run = _Attempt(ctx, task, attempt, dep_commits, emit)
    try:
        return run.stages(dep_contexts, cancel, resume)
    except Exception as exc:
        log.exception("task %s attempt %s failed in %s", task.id, attempt, run.stage)
        with (run.log_dir / "internal-error.log").open("a") as f:
            f.write(redact(traceback.format_exc()))
        return run.record(False, error=short(f"{run.stage} failed: {type(exc).__name__}: {exc}"))
    finally:
        redact_files(run.log_dir)
        redact_files(ctx.paths.home(task.id))  # the CLIs' transcripts and histories


class _Attempt:
    """The state one attempt builds up, stage by stage, and its evidence."""

    def __init__(self, ctx: RunContext, task: Task, attempt: int, dep_commits: Mapping[str, str],
                 emit: Emit) -> None:
        self.ctx, self.task, self.attempt, self.dep_commits, self.emit = ctx, task, attempt, dep_commits, emit
        self.started = time.time()
        self.folder = ctx.paths.task_dir(task.id)
        self.log_dir = self.folder / "logs" / f"attempt-{attempt}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.profile = ctx.profiles[ctx.plan.agent_for(task, ctx.profiles)]
        self.base = ctx.base_sha
        self.agent: dict[str, Any] = {"profile": self.profile.name, "adapter": self.profile.adapter}
        self.result: AgentResult | None = None
        self.incidents: list[str] = []
        self.stage = "workspace"

    def record(self, ok: bool, **kw: Any) -> TaskRecord:
        result = self.result
        fields: dict[str, Any] = {
            "run_id": self.ctx.paths.run_id, "task_id": self.task.id, "attempt": self.attempt, "ok": ok,
            "branch": self.ctx.paths.branch(self.task.id), "base_sha": self.base, "commit_sha": None,
            "files_changed": [], "deviations": [], "contract_violations": [], "verify": None, "agent": self.agent,
            "started_at": self.started, "finished_at": time.time(), "dependencies": list(self.dep_commits),
            "incidents": self.incidents, "profile": self.profile.name,
            "error_kind": result.error_kind if result and not result.ok else None,
            "session_id": result.session_id if result else None, "cost_usd": result.cost_usd if result else None,
            "retry_after": result.retry_after if result else None, "rehearsal": self.ctx.rehearsal,
        }
        fields.update(kw)
        rec = TaskRecord(**fields)
        write_evidence(self.folder, rec, self.task, self.ctx.plan)
        return rec

    def stages(self, dep_contexts: Mapping[str, Mapping[str, Any]], cancel: threading.Event,
               resume: tuple[str, str] | None) -> TaskRecord:
        ctx, task, paths, git, profile = self.ctx, self.task, self.ctx.paths, self.ctx.git, self.profile
        session = None
        previous = paths.attempt_folder(task.id, self.attempt - 1)
        if resume is not None and (previous / "tree").is_dir():
            # A rate-limited or overloaded agent continues its own session where it left off.
            session, self.base = resume
            ws = workspace.Workspace(previous, paths.home(task.id), self.base)
        else:
            try:
                ws = prepare_workspace(ctx, task, self.attempt, self.dep_commits)
            except TaskError as exc:
                return self.record(False, error=f"workspace: {exc}", transient=exc.transient)
            self.base = ws.base
        self.emit(EventKind.TASK_WORKSPACE, {"workspace": str(ws.tree), "base": self.base},
                  task={"worktree": str(ws.folder), "base_sha": self.base, "branch": paths.branch(task.id)})

        self.stage = "agent"
        prompt = build_prompt(ctx.plan, task, dep_contexts)
        (self.log_dir / "prompt.md").write_text(prompt)
        # The more specific setting wins: the task's own timeout, then the profile's, then the plan's.
        timeout = task.timeout or profile.timeout or ctx.plan.defaults.timeout
        confine = confinement(ctx, profile, ws, agent=True)
        repo_before = scrutiny.repo_state(ws.tree)
        env = workspace_env(ctx.agent_env(profile, task.id), ws, home=True)
        register_env(env)  # keys handed to this agent (a rehearsal's, say) are masked like the user's
        request = AgentRequest(task.id, prompt, ws.tree, self.log_dir, profile, timeout, env,
                               resume_session=session, script=task.script, cancel=cancel, home=ws.home,
                               confine=confine)
        self.result = result = _run_agent(ctx.make_agent(profile), request)
        self.agent.update(ok=result.ok, exit_code=result.exit_code, summary=short(result.summary),
                          session_id=result.session_id, cost_usd=result.cost_usd, turns=result.turns,
                          tokens={"input": result.tokens.input, "output": result.tokens.output,
                                  "cached": result.tokens.cached},
                          error_kind=result.error_kind.value if result.error_kind else None,
                          error_message=short(result.error_message), seconds=round(result.duration, 3),
                          sandbox="landlock" if confine.landlock else "off", binary=result.binary,
                          version=result.version and short(result.version, 200))
        self.incidents += [f"refused or outside its work tree: {short(b, 500)}" for b in result.blocked]
        self.incidents += scrutiny.repo_notes(repo_before, scrutiny.repo_state(ws.tree))
        self.emit(EventKind.TASK_AGENT_DONE, self.agent,
                  attempt={"agent_exit": result.exit_code, "error_kind": self.agent["error_kind"]},
                  task={"cost_usd": result.cost_usd, "tokens_in": result.tokens.input,
                        "tokens_out": result.tokens.output, "incidents_json": json.dumps(self.incidents)})
        if not result.ok:
            kind = result.error_kind or ErrorKind.UNKNOWN
            return self.record(False, error=f"agent {profile.name}: {kind.value}: {self.agent['error_message']}",
                               transient=kind.transient)

        self.stage = "capture"
        try:
            captured_tree = workspace.capture(git, ws, f"[plait {paths.run_id}] {task.id}: {task.title}")
        except (workspace.WorkspaceGone, GitError) as exc:  # e.g. files the agent made unreadable
            return self.record(False, error=f"capture: {exc}", transient=False)
        commit = captured_tree.commit
        ref = f"refs/heads/{paths.branch(task.id)}"
        git.update_ref(ref, commit, git.rev_parse(ref))
        changed = [p for _, p in captured_tree.changed]
        captured = {"commit_sha": commit, "files_changed": changed, "deviations": out_of_scope(changed, task.files),
                    "contract_violations": contract_violations(ctx.plan, task, changed)}
        self.emit(EventKind.TASK_CAPTURED, {"commit": commit, "files": changed, "deviations": captured["deviations"],
                                            "contract_violations": captured["contract_violations"]},
                  task={"commit_sha": commit, "deviations_json": json.dumps(captured["deviations"])})
        problem = self.capture_problem(captured_tree)
        if problem:
            return self.record(False, **captured, error=problem, transient=False)

        self.stage = "verify"
        verify = run_verify(ctx.plan.verify_for(task), ws.tree, self.log_dir, timeout, cancel,
                            workspace_env(ctx.verify_env or verify_environment(), ws, home=False),
                            confinement(ctx, profile, ws, agent=False))
        self.emit(EventKind.TASK_VERIFIED, {"command": verify.command, "exit_code": verify.exit_code,
                                            "seconds": verify.seconds, "ok": verify.ok},
                  task={"verify_exit": verify.exit_code, "verify_seconds": verify.seconds})
        if not verify.ok:
            why = "timed out" if verify.timed_out else f"exited {verify.exit_code}"
            return self.record(False, **captured, verify=verify, error=f"verify `{verify.command}` {why}",
                               transient=verify.timed_out)
        workspace.remove(ws.folder)  # the work is in its commit; failed attempts' workspaces stay to look at
        return self.record(True, **captured, verify=verify)

    def capture_problem(self, captured: workspace.Capture) -> str | None:
        """Why what the agent left fails the task, or None: nothing changed, a frozen contract
        changed, or deletions the task did not allow."""
        task, plan = self.task, self.ctx.plan
        if not captured.changed and not task.allow_empty:
            return ("the agent changed nothing (a task must change files; set `allow_empty: true` for a "
                    "check-only task)")
        changed = [p for _, p in captured.changed]
        violations = contract_violations(plan, task, changed)
        if violations:
            return f"changed frozen contract(s) {', '.join(violations)} owned by another task"
        deleted = [p for status, p in captured.changed if status == "D"]
        if deleted and not task.allow_deletions:
            problem = scrutiny.deletion_problem(deleted, self.ctx.git.count_files(self.base), self.ctx.protected)
            if problem:
                return f"{problem} (set `allow_deletions: true` on the task if that is intended)"
        return None


def _run_agent(agent: Agent, request: AgentRequest) -> AgentResult:
    try:
        return agent.run(request)
    except OSError as exc:  # e.g. the CLI is not installed; other exceptions are run_attempt's to map
        return AgentResult(False, None, error_kind=ErrorKind.CRASH if exc.errno is None else ErrorKind.UNKNOWN,
                           error_message=f"could not start the agent: {exc}")


def run_verify(command: str | None, worktree: Path, log_dir: Path, timeout: float, cancel: threading.Event,
               env: Mapping[str, str], confine: Confinement | None) -> VerifyResult:
    """The user's test command in the workspace, confined like the agent: it runs the agent's code."""
    if not command:
        return VerifyResult(None, None, 0.0, "")
    log = log_dir / "verify.log"
    done = proc.run(command, shell=True, cwd=worktree, env=env or verify_environment(), timeout=timeout,
                    cancel=cancel, stdout_path=log, stderr_path=log, confine=confine)
    return VerifyResult(command, done.returncode, round(done.duration, 3), printable(redact(done.stdout[-3000:])),
                        done.timed_out)

"""One attempt of one task: workspace -> sandboxed agent -> capture -> verify -> review/fix -> evidence.

Runs on a worker thread. It never decides the run's fate: it returns a TaskRecord and the engine
schedules retries, blocks dependents and integrates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from plait import proc
from plait.agents.base import Agent, AgentRequest, AgentResult, ErrorKind, Permission, Profile, SandboxMode
from plait.evidence import ReviewRecord, TaskRecord, VerifyResult, write_evidence
from plait.git import merge, workspace
from plait.git.repo import GitError, RefChanged
from plait.plan.analyze import patterns_overlap
from plait.plan.model import Plan, Script, Task
from plait.profiles import auth_hint
from plait.redact import redact, redact_files, register_env
from plait.run import environment, review, scrutiny
from plait.run.context import RunContext as RunContext  # re-exported: api, integrate and the engine use them
from plait.run.context import RunPaths as RunPaths
from plait.run.prompts import build_prompt, role_for
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


def verify_environment() -> dict[str, str]:
    """The user's own test command runs with the user's environment, minus git's internals."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


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
    old_sha = git.rev_parse(ref) if attempt > 1 else None  # a first attempt's branch does not exist yet
    if old_sha is not None:  # a failed earlier attempt: the branch starts again from the base
        git.delete_ref(ref, old_sha)
    return workspace.create(git, paths.attempt_folder(task.id, attempt), paths.home(task.id), base,
                            paths.branch(task.id), spares(paths))


def spares(paths: RunPaths) -> Path:
    """Where verified attempts' work trees wait to become the next attempts' (plait.git.workspace.park): the
    repository's, beside its runs' folders, so a later run of it starts with the trees this one left."""
    return workspace.spares_folder(paths.workspaces.parent)


class TaskError(Exception):
    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def confinement(ctx: RunContext, profile: Profile | None, ws: workspace.Workspace, agent: bool) -> Confinement:
    """The sandbox for an attempt's processes: writes confined unless the profile turned it off or the
    kernel cannot (the run said so when it started); processes always end with the attempt. A
    read-only profile's agent (a reviewer's, always) cannot write its work tree either (its verify
    command can)."""
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
    run = Attempt(ctx, task, attempt, dep_commits, emit, cancel)
    try:
        return run.stages(dep_contexts, resume)
    except Exception as exc:
        log.exception("task %s attempt %s failed in %s", task.id, attempt, run.stage)
        with (run.log_dir / "internal-error.log").open("a") as f:
            f.write(redact(traceback.format_exc()))
        return run.record(False, error=short(f"{run.stage} failed: {type(exc).__name__}: {exc}"))
    finally:
        run.finish_environment()  # teardown and the ports back, whatever happened above
        redact_files(run.log_dir)
        redact_files(ctx.paths.home(task.id))  # the CLIs' transcripts and histories


class Attempt:
    """The state one attempt builds up, stage by stage, and its evidence. It is also the review loop's
    `Work` (plait.run.review): the reviewer and the fixer run, and their work is captured and verified,
    in this attempt's workspace."""

    def __init__(self, ctx: RunContext, task: Task, attempt: int, dep_commits: Mapping[str, str],
                 emit: Emit, cancel: threading.Event) -> None:
        self.ctx, self.task, self.attempt, self.dep_commits, self.emit = ctx, task, attempt, dep_commits, emit
        self.cancel = cancel
        self.started = time.time()
        self.folder = ctx.paths.task_dir(task.id)
        self.log_dir = self.folder / "logs" / f"attempt-{attempt}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.last_dir = self.log_dir  # where the last agent wrote: its verify log goes beside it
        self.profile = ctx.profiles[ctx.plan.agent_for(task, ctx.profiles)]
        # The more specific setting wins: the task's own timeout, then the profile's, then the plan's.
        self.timeout = task.timeout or self.profile.timeout or ctx.plan.defaults.timeout
        self.base = ctx.base_sha
        self.ws: workspace.Workspace | None = None
        self.branch_at: str | None = None  # where the task's branch is: none before the first capture
        self.agent: dict[str, Any] = {"profile": self.profile.name, "adapter": self.profile.adapter}
        self.result: AgentResult | None = None
        self.captured: dict[str, Any] = {}  # the last capture: commit, files, deviations, contract violations
        self.costs: list[float | None] = []  # every agent's of this attempt: implementer, reviewer, fixer
        self.tokens = [0, 0]
        self.incidents: list[str] = []
        self.env: environment.AttemptEnvironment | None = None  # docs/environment.md
        self.stage = "workspace"

    def record(self, ok: bool, **kw: Any) -> TaskRecord:
        self.finish_environment()  # teardown first: its output is part of the evidence
        result = self.result
        fields: dict[str, Any] = {
            "run_id": self.ctx.paths.run_id, "task_id": self.task.id, "attempt": self.attempt, "ok": ok,
            "branch": self.ctx.paths.branch(self.task.id), "base_sha": self.base, "commit_sha": None,
            "files_changed": [], "deviations": [], "contract_violations": [], "verify": None, "agent": self.agent,
            "started_at": self.started, "finished_at": time.time(), "dependencies": list(self.dep_commits),
            "incidents": self.incidents, "profile": self.profile.name,
            "error_kind": result.error_kind if result and not result.ok else None,
            "session_id": result.session_id if result else None, "cost_usd": self.cost(),
            "retry_after": result.retry_after if result else None, "rehearsal": self.ctx.rehearsal,
            "environment": self.env.summary() if self.env else None,
        }
        fields.update(self.captured)
        fields.update(kw)
        rec = TaskRecord(**fields)
        write_evidence(self.folder, rec, self.task, self.ctx.plan)
        return rec

    def cost(self) -> float | None:
        known = [c for c in self.costs if c is not None]
        return round(sum(known), 6) if known else None

    def usage(self) -> dict[str, Any]:
        """The attempt's spending so far and its incidents, as the task's row holds them."""
        return {"cost_usd": self.cost(), "tokens_in": self.tokens[0], "tokens_out": self.tokens[1],
                "incidents_json": json.dumps(self.incidents)}

    def stages(self, dep_contexts: Mapping[str, Mapping[str, Any]], resume: tuple[str, str] | None) -> TaskRecord:
        ctx, task, paths, profile = self.ctx, self.task, self.ctx.paths, self.profile
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
        self.ws = ws
        self.emit(EventKind.TASK_WORKSPACE, {"workspace": str(ws.tree), "base": self.base},
                  task={"worktree": str(ws.folder), "base_sha": self.base, "branch": paths.branch(task.id)})
        self.stage = "setup"
        problem = self.prepare_environment(ws, resumed=session is not None)
        if problem:
            return self.record(False, error=short(f"environment: {problem}"), transient=False)

        self.stage = "agent"
        prompt = build_prompt(ctx.plan, task, dep_contexts, ctx.docs, paths.repo_root)
        role = role_for(task.role, paths.repo_root)
        self.result = result = self.call_agent(role, profile, prompt, self.log_dir, session, task.script)
        self.agent.update(ok=result.ok, exit_code=result.exit_code, summary=short(result.summary),
                          session_id=result.session_id, cost_usd=result.cost_usd, turns=result.turns,
                          tokens={"input": result.tokens.input, "output": result.tokens.output,
                                  "cached": result.tokens.cached},
                          error_kind=result.error_kind.value if result.error_kind else None,
                          error_message=short(result.error_message), seconds=round(result.duration, 3),
                          sandbox="landlock" if confinement(ctx, profile, ws, True).landlock else "off",
                          binary=result.binary, version=result.version and short(result.version, 200), role=role)
        self.emit(EventKind.TASK_AGENT_DONE, self.agent,
                  attempt={"agent_exit": result.exit_code, "error_kind": self.agent["error_kind"]}, task=self.usage())
        if not result.ok:
            kind = result.error_kind or ErrorKind.UNKNOWN
            said = self.agent["error_message"]
            what = kind.value if said in ("", kind.value) else f"{kind.value}: {said}"  # never "cancelled: cancelled"
            if kind is ErrorKind.AUTH:  # not the CLI's own advice ("Please run /login"): what plait needs
                what = f"auth: no working credentials ({clip(said, 200)}) — {auth_hint(profile)}"
            return self.record(False, error=f"agent {profile.name}: {what}", transient=kind.transient)

        self.stage = "capture"
        commit, problem = self.capture()
        if problem or commit is None:
            return self.record(False, error=problem, transient=False)

        self.stage = "verify"
        verify = self.verify()
        if not verify.ok:
            why = "timed out" if verify.timed_out else f"exited {verify.exit_code}"
            return self.record(False, verify=verify, error=f"verify `{verify.command}` {why}",
                               transient=verify.timed_out)

        reviewed: ReviewRecord | None = None
        if ctx.plan.reviewed(task):
            self.stage = "review"
            reviewer, fixer = review.profiles_for(ctx.profiles, profile)
            job = review.Job(ctx.plan, task, ctx.docs, paths.repo_root, reviewer, fixer, commit, verify)
            done = review.review_and_fix(self, job)
            verify, reviewed = done.verify, done.record
            if not done.approved:  # never retried as a whole unless an agent failed transiently
                failed_kind = done.error_kind
                return self.record(False, verify=verify, review=reviewed, error=done.error, error_kind=failed_kind,
                                   transient=bool(failed_kind and failed_kind.transient), session_id=None,
                                   profile=done.profile or profile.name)
        self.finish_environment(clear=True)
        # The work is in its commit: the tree goes to the next task; failed attempts' workspaces stay to look at.
        workspace.park(ws, spares(paths))
        return self.record(True, verify=verify, review=reviewed)

    # -- the stages' mechanics, shared with the review loop ---------------------------------------------
    def prepare_environment(self, ws: workspace.Workspace, resumed: bool, files_only: bool = False) -> str | None:
        """The attempt's environment (copied files, caches, ports, setup): None when ready, else why not.
        `files_only`: the copied files and caches alone (nothing there to tear down)."""
        ctx = self.ctx
        spec = environment.for_task(ctx.plan, self.task, ctx.paths.repo_root)
        if files_only:
            spec = spec.model_copy(update={"setup": None, "teardown": None, "ports": None})
        if environment.is_empty(spec):
            return None
        where = environment.Where(
            repo_root=ctx.paths.repo_root, cache_root=environment.cache_root(ctx.paths.workspaces), tree=ws.tree,
            home=ws.home, tmp=ws.tmp, log_dir=self.log_dir, timeout=self.timeout, cancel=self.cancel,
            base_env=ctx.verify_env or verify_environment(),
            landlock=confinement(ctx, self.profile, ws, agent=False).landlock)
        slot = environment.slot_name(ctx.paths.run_id, self.task.id, self.attempt)
        self.env = environment.AttemptEnvironment(spec, where, slot, resumed=resumed)
        return self.env.prepare()

    def finish_environment(self, clear: bool = False) -> None:
        """Teardown and the ports back; `clear`: the copied files and cache links go too (the tree is kept
        for another task)."""
        if self.env is not None:
            self.env.finish()
            if clear:
                self.env.clear()

    def env_vars(self) -> dict[str, str]:
        return self.env.variables if self.env is not None else {}

    def call_agent(self, role: str, profile: Profile, prompt: str, log_dir: Path, session: str | None = None,
                   script: Script | None = None, agent_id: str | None = None) -> AgentResult:
        self.last_dir = log_dir
        result, incidents = launch(self.ctx, self._ws(), self.task.id, role, profile, prompt, log_dir, self.timeout,
                                   self.cancel, agent_id or self.task.id, session, script, self.env_vars())
        self.costs.append(result.cost_usd)
        self.tokens[0] += result.tokens.input
        self.tokens[1] += result.tokens.output
        who = "" if log_dir == self.log_dir else f"{role}: "
        self.incidents += [who + note for note in incidents]
        return result

    def reopen(self, base: str, commit: str) -> None:
        """A fresh workspace holding `commit`, this attempt's verified work (a level review's fixer works
        there); captures stay relative to the task's `base`, so files changed and deviations are the task's."""
        paths = self.ctx.paths
        ws = workspace.create(self.ctx.git, paths.attempt_folder(self.task.id, self.attempt),
                              paths.home(self.task.id), commit, paths.branch(self.task.id))
        self.ws, self.base, self.branch_at = replace(ws, base=base), base, commit
        # Its verify needs the copied files and the caches; no setup: nobody would tear it down.
        problem = self.prepare_environment(ws, resumed=False, files_only=True)
        if problem:
            raise TaskError(f"environment: {problem}", transient=False)

    def _ws(self) -> workspace.Workspace:
        assert self.ws is not None, "the workspace comes first"
        return self.ws

    def run_role(self, role: str, profile: Profile, prompt: str, label: str) -> AgentResult:
        return self.call_agent(role, profile, prompt, self.log_dir / label, agent_id=f"{self.task.id}/{label}")

    def capture(self) -> tuple[str | None, str | None]:
        """Commit the work tree on the base and move the task's branch to it: (commit, why the change
        fails the task or None)."""
        ctx, task, git, paths = self.ctx, self.task, self.ctx.git, self.ctx.paths
        try:
            with self.hidden():
                captured_tree = workspace.capture(git, self._ws(), f"[plait {paths.run_id}] {task.id}: {task.title}")
        except (workspace.WorkspaceGone, GitError) as exc:  # e.g. files the agent made unreadable
            return None, f"capture: {exc}"
        commit = captured_tree.commit
        ref = f"refs/heads/{paths.branch(task.id)}"
        try:  # from where this attempt knows the branch to be: no git to ask
            git.update_ref(ref, commit, self.branch_at)
        except RefChanged:  # somewhere else (say, a Ray node's repository): from where it is
            git.update_ref(ref, commit, git.rev_parse(ref))
        self.branch_at = commit
        changed = [p for _, p in captured_tree.changed]
        deviations, violations = out_of_scope(changed, task.files), contract_violations(ctx.plan, task, changed)
        self.captured = {"commit_sha": commit, "files_changed": changed, "deviations": deviations,
                         "contract_violations": violations,
                         "files_deleted": [p for status, p in captured_tree.changed if status == "D"]}
        self.emit(EventKind.TASK_CAPTURED, {"commit": commit, "files": changed, "deviations": deviations,
                                            "contract_violations": violations},
                  task={"commit_sha": commit, "deviations_json": json.dumps(deviations)})
        return commit, self.capture_problem(captured_tree)

    def verify(self) -> VerifyResult:
        ctx, ws = self.ctx, self._ws()
        verify = run_verify(ctx.plan.verify_for(self.task), ws.tree, self.last_dir, self.timeout, self.cancel,
                            workspace_env({**(ctx.verify_env or verify_environment()), **self.env_vars()}, ws,
                                          home=False),
                            confinement(ctx, self.profile, ws, agent=False))
        self.emit(EventKind.TASK_VERIFIED, {"command": verify.command, "exit_code": verify.exit_code,
                                            "seconds": verify.seconds, "ok": verify.ok},
                  task={"verify_exit": verify.exit_code, "verify_seconds": verify.seconds})
        return verify

    def diff(self, commit: str) -> str:
        """The task's change, as the reviewer reads it (never through the user's diff drivers)."""
        return review.change_diff(self.ctx.git, self.base, commit)

    def tree_state(self) -> str:
        with self.hidden():
            return workspace.tree_state(self.ctx.git, self._ws())

    def hidden(self) -> contextlib.AbstractContextManager[None]:
        """What the environment put in the work tree (copied files, cache links), out of git's sight."""
        if self.env is None:
            return contextlib.nullcontext()
        return self.env.hidden(self._ws().folder / "environment-aside")

    def put_back(self, tree: str) -> list[str]:
        """Put the work tree back to `tree` if a reviewer changed it (possible only where the kernel cannot
        confine writes); what it had changed becomes an incident."""
        with self.hidden():
            changed = workspace.put_back(self.ctx.git, self._ws(), tree)
        if changed:
            self.incidents.append(f"reviewer: changed {', '.join(changed[:10])} (a reviewer only reads): put back")
        return changed

    def report(self, kind: EventKind, data: dict[str, Any], record: ReviewRecord) -> None:
        """A review event, with the review so far and the spending in the task's row."""
        self.emit(kind, data, task={**self.usage(), "review_json": json.dumps(record.summary())})

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


def launch(ctx: RunContext, ws: workspace.Workspace, task_id: str, role: str, profile: Profile, prompt: str,
           log_dir: Path, timeout: float, cancel: threading.Event, agent_id: str, session: str | None = None,
           script: Script | None = None, variables: Mapping[str, str] | None = None,
           ) -> tuple[AgentResult, list[str]]:
    """One agent in `ws`, sandboxed, with its allow-listed environment: its result, and its incidents (what
    it was refused or reached outside its work tree, and what it did to its workspace repository)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "prompt.md").write_text(prompt)
    repo_before = scrutiny.repo_state(ws.tree)
    env = workspace_env({**ctx.agent_env(profile, agent_id), **(variables or {})}, ws, home=True)
    register_env(env)  # keys handed to this agent (a rehearsal's, say) are masked like the user's
    confine = confinement(ctx, profile, ws, agent=True)
    request = AgentRequest(task_id, prompt, ws.tree, log_dir, profile, timeout, env, resume_session=session,
                           script=script, cancel=cancel, home=ws.home, confine=confine, role=role)
    result = _run_agent(ctx.make_agent(profile), request)
    incidents = [f"refused or outside its work tree: {short(b, 500)}" for b in result.blocked]
    return result, incidents + scrutiny.repo_notes(repo_before, scrutiny.repo_state(ws.tree))


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

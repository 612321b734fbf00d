"""One role agent (the spec writer, the planner) run on its own, outside a plan run.

It runs as a task's agent does: in a workspace of its own made from the repository's HEAD
(plait.git.workspace), every process confined by the kernel to that workspace (plait.sandbox), with
the profile's environment allow-list. plait then captures the work tree's file state and reads back
only the files the agent was asked to write; the caller copies those into the user's checkout with
`deliver`. Nothing else the agent did reaches the checkout. The prompt, the agent's logs and a
`result.json` stay in the job's folder under `.plait/workflow/`; the workspace is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from plait.agents.base import Agent, AgentRequest, AgentResult, Profile, SandboxMode
from plait.errors import Location, PlaitError
from plait.git import workspace
from plait.git.repo import Git, GitError
from plait.profiles import env_for, workspace_root
from plait.redact import redact_files, register_env
from plait.run.task import short, workspace_env
from plait.sandbox import Confinement, support

MakeAgent = Callable[[Profile], Agent]
Notify = Callable[[str], None]
MAX_OUTPUT_BYTES = 1 << 20  # a spec or a plan; anything bigger is not one


@dataclass(frozen=True)
class RoleJob:
    role: str  # also the AgentRequest's task id
    profile: Profile
    prompt: str
    outputs: tuple[str, ...]  # repository paths the agent is asked to write
    log_dir: Path  # the prompt, the agent's logs and result.json
    timeout: float
    inputs: Mapping[str, str] = field(default_factory=dict)  # path -> text placed in the workspace first


@dataclass(frozen=True)
class RoleRun:
    outputs: Mapping[str, str | None]  # each expected path -> the text the agent left there (None: nothing)
    changed: tuple[str, ...]  # every path the agent changed
    commit: str  # that file state, in the repository's objects (no ref points at it)
    result: AgentResult

    @property
    def ignored(self) -> tuple[str, ...]:
        """Changed paths that are not requested outputs: never copied to the checkout."""
        return tuple(p for p in self.changed if p not in self.outputs)


# Variables added to one job's agent environment: tests point the CLI at plait's scripted model server
# this way (as `plait.api.execute(task_env=...)` does for a run's tasks).
RoleEnv = Callable[["RoleJob"], Mapping[str, str]]


def run_role(git: Git, repo_root: Path, job: RoleJob, make_agent: MakeAgent | None = None,
             notify: Notify = lambda _line: None, role_env: RoleEnv | None = None) -> RoleRun:
    """Run the job's agent once; a user error when the agent itself fails (its logs say why).
    `role_env(job)` adds variables to the agent's environment."""
    landlock = _landlock(job.profile, notify)
    base = git.resolve_commit("HEAD")
    folder = workspace.repo_folder(workspace_root(repo_root, os.environ) or workspace.default_root(), git)
    folder = folder / "_workflow" / secrets.token_hex(4)
    job.log_dir.mkdir(parents=True, exist_ok=True)
    (job.log_dir / "prompt.md").write_text(job.prompt, encoding="utf-8")
    try:
        ws = workspace.create(git, folder / "a1", folder / "home", base, "plait-workflow")
        if job.inputs:  # committed (no ref) as the base, so that only the agent's changes count as changed
            for rel, text in job.inputs.items():
                (ws.tree / rel).parent.mkdir(parents=True, exist_ok=True)
                (ws.tree / rel).write_text(text, encoding="utf-8")
            ws = workspace.Workspace(ws.folder, ws.home, workspace.capture(git, ws, f"[plait] {job.role} input").commit)
        env = workspace_env({**env_for(job.profile, os.environ), **(role_env(job) if role_env else {})}, ws,
                            home=True)
        register_env(env)
        request = AgentRequest(job.role, job.prompt, ws.tree, job.log_dir, job.profile, job.timeout, env,
                               cancel=threading.Event(), home=ws.home,
                               confine=Confinement(ws.writable, landlock=landlock), role=job.role)
        result = _run(make_agent or _default_agent(), request)
        try:
            captured = workspace.capture(git, ws, f"[plait] {job.role}")
            changed, commit = tuple(p for _, p in captured.changed), captured.commit
        except (workspace.WorkspaceGone, GitError):  # the agent destroyed its own work tree
            changed, commit = (), ws.base
        outputs = {rel: read_output(ws.tree, rel) for rel in job.outputs}
    finally:
        workspace.remove(folder)
        with contextlib.suppress(OSError):  # the jobs' parent, unless another job is using it
            folder.parent.rmdir()
        redact_files(job.log_dir)
    done = RoleRun(outputs, changed, commit, result)
    _evidence(job, done, base, landlock)
    if not result.ok:
        kind = result.error_kind.value if result.error_kind else "failed"
        message = " ".join(short(result.error_message, 300).split()) or f"exit code {result.exit_code}"
        raise PlaitError(f"the {job.role} agent ({job.profile.name}) failed: {kind}: {message}",
                         f"its logs are in {job.log_dir}; fix the cause and run again")
    return done


def _default_agent() -> MakeAgent:
    from plait.agents.registry import make_agent

    return make_agent


def _landlock(profile: Profile, notify: Notify) -> bool:
    """Whether the agent's writes are confined: as for tasks, unless the profile turned it off."""
    found = support()
    if profile.sandbox is SandboxMode.OFF:
        return False
    if found.landlock_abi is None:
        if profile.sandbox is SandboxMode.LANDLOCK:
            raise PlaitError(f"profile {profile.name} asks for sandbox = \"landlock\", but {found.landlock_reason}",
                             "run on Linux 5.13 or newer with Landlock enabled, or set sandbox = \"auto\"")
        notify(f"the agent's writes are NOT confined on this machine ({found.landlock_reason}); "
               "see docs/security.md")
        return False
    return True


def _run(make_agent: MakeAgent, request: AgentRequest) -> AgentResult:
    agent = make_agent(request.profile)
    try:
        return agent.run(request)
    except OSError as exc:  # e.g. the CLI is not installed
        raise PlaitError(f"could not start the {request.task_id} agent ({request.profile.name}): {exc}",
                         "install its CLI (docs/agents.md) or pick another profile with --agent") from None


def read_output(tree: Path, rel: str) -> str | None:
    """The text at `rel` in the work tree: None when missing, not a regular file (a symlink the agent
    could point anywhere), or too big."""
    path = tree / rel
    try:
        if path.is_symlink() or not path.resolve().is_relative_to(tree.resolve()) or not path.is_file():
            return None
        if path.stat().st_size > MAX_OUTPUT_BYTES:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _evidence(job: RoleJob, done: RoleRun, base: str, landlock: bool) -> None:
    r = done.result
    doc = {"role": job.role, "profile": job.profile.name, "adapter": job.profile.adapter, "ok": r.ok,
           "exit_code": r.exit_code, "summary": short(r.summary),
           "error_kind": r.error_kind.value if r.error_kind else None, "error_message": short(r.error_message),
           "cost_usd": r.cost_usd, "tokens": {"input": r.tokens.input, "output": r.tokens.output},
           "seconds": round(r.duration, 3), "sandbox": "landlock" if landlock else "off", "base": base,
           "commit": done.commit, "changed": list(done.changed), "ignored": list(done.ignored),
           "outputs": {rel: text is not None for rel, text in done.outputs.items()}}
    (job.log_dir / "result.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def check_free(repo_root: Path, rel: str, force: bool) -> Path:
    """Where `rel` is in the checkout, refusing a path outside it, or an existing file without `force`."""
    target = repo_root / rel
    if target.is_symlink() or not target.parent.resolve().is_relative_to(repo_root.resolve()):
        raise PlaitError(f"{rel} is outside the repository (or a symlink)", "write specs inside the repository",
                         Location(str(target)))
    if target.exists() and not force:
        raise PlaitError(f"{rel} already exists", "add --force to replace it, or move it away",
                         Location(str(target)))
    return target


def deliver(repo_root: Path, rel: str, text: str, force: bool) -> Path:
    """Write one requested output into the user's checkout: the only writes plait makes there."""
    target = check_free(repo_root, rel, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def job_dir(repo_root: Path, name: str) -> Path:
    """`.plait/workflow/<name>/`: where a spec's or plan's agent runs keep their evidence."""
    from plait.api import _ensure_plait_dir  # the same self-ignoring `.plait/` that runs use

    _ensure_plait_dir(repo_root)
    return repo_root / ".plait" / "workflow" / name

"""One attempt on a Ray node: the node's half of plait.run.ray_executor.

The node trusts nothing it kept: each attempt gets a fresh workspace and a fresh evidence folder, built
from the base the driver sent (a git bundle, kept in a node-local cache repository so that later attempts
on the node fetch only what is new). The attempt itself is plait's own `run_attempt`, with the same
containment as on the driver's machine. Its events go back as they happen, pushed to the run's `Control`
actor beside the driver (which the driver drains); what it returns is a bundle of its commit and its
evidence files. Nothing here writes the run's journal or the
user's repository: the driver does, from what comes back.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import shutil
import socket
import tarfile
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from plait.agents.base import Agent, Profile, SandboxMode
from plait.evidence import TaskRecord
from plait.git.repo import Git, GitError
from plait.plan.model import Plan
from plait.redact import redact_files
from plait.run.context import RunContext, RunPaths
from plait.run.prompts import Documents
from plait.state import EventKind

CONTROL_POLL_SECONDS = 0.5  # how often a node sends its events and asks whether the run was cancelled
CONTROL_MISSES = 6  # the driver unreachable this many times running: it is gone, the attempt stops
FLUSH_TRIES = 3  # a finished attempt's last events: how often the node tries to hand them over


@dataclass(frozen=True)
class EnvTable:
    """Each agent's environment, computed by the driver (the profile's allow-list, a rehearsal's endpoint):
    only the variables this attempt's agents need ever leave the driver."""

    envs: Mapping[tuple[str, str], Mapping[str, str]]  # (profile, agent id) -> env

    def __call__(self, profile: Profile, agent_id: str) -> dict[str, str]:
        found = self.envs.get((profile.name, agent_id))
        if found is None:  # an agent the driver did not foresee gets the implementer's safe base only
            found = next((e for (p, _), e in self.envs.items() if p == profile.name), {})
        return dict(found)

    def __repr__(self) -> str:  # never the values, should the table reach a log
        return f"EnvTable({len(self.envs)} agents)"


@dataclass(frozen=True)
class NodeJob:
    run_id: str
    plan: Plan
    task_id: str
    attempt: int
    base_sha: str
    dep_commits: Mapping[str, str]
    dep_contexts: Mapping[str, Mapping[str, Any]]
    profiles: Mapping[str, Profile]
    make_agent: Callable[[Profile], Agent]
    agent_env: EnvTable
    docs: Documents
    protected: tuple[str, ...]
    rehearsal: bool
    # The repository's configuration that attempts read from its root: plait.toml, pyproject.toml and the role
    # overrides (.plait/roles/*.md), by repository-relative path.
    config: Mapping[str, str] = field(default_factory=dict)
    # One try of the attempt (a lost node's attempt runs again with a new one): its events' address at the
    # driver, so a lost try's late events are told apart.
    token: str = ""

    def retry(self) -> NodeJob:
        return replace(self, token=uuid.uuid4().hex)


@dataclass(frozen=True)
class NodeResult:
    record: TaskRecord
    bundle: bytes | None  # the result commit, less what the driver sent; None: nothing new
    evidence: bytes  # the task's evidence folder (EVIDENCE.md, results.json, logs/attempt-N/...), a tar
    node: str


def node_root() -> Path:
    """Where a node keeps its cache repository and its attempts' scratch folders."""
    given = os.environ.get("PLAIT_NODE_ROOT")
    if given:
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "plait" / "node"


def cache_repository(folder: Path) -> Git:
    """The node's cache repository (its work tree stays empty): objects stay between attempts; created
    once, under a lock (a node runs several attempts at once)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".git" / "HEAD").is_file():
            Git.init(folder)
    return Git(folder, folder / ".git")


def has_commit(git: Git, sha: str) -> bool:
    return git.try_run("cat-file", "-e", f"{sha}^{{commit}}").ok


def unbundle(git: Git, data: bytes, scratch: Path) -> None:
    path = scratch / f"in-{uuid.uuid4().hex}.bundle"
    path.write_bytes(data)
    try:
        git.run("bundle", "unbundle", str(path))
    finally:
        path.unlink()


def result_bundle(git: Git, ref: str, sent: list[str], scratch: Path) -> bytes | None:
    """The attempt's commit and whatever it was built on that the driver lacks (a merged base)."""
    path = scratch / "out.bundle"
    done = git.try_run("bundle", "create", "-q", str(path), ref, "--not", *sent)
    if not done.ok:
        if "empty bundle" in done.stderr:
            return None  # the commit is one the driver sent (a task that changed nothing)
        raise GitError.failed(done)
    return path.read_bytes()


def tar_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                tar.add(entry, arcname=entry.name)
    return buf.getvalue()


class Outbox:
    """The attempt's events on their way to the driver, numbered: a batch the driver's actor may have got
    although its answer was lost is sent again, and the driver keeps each number once."""

    def __init__(self, control: Any, token: str) -> None:
        self.control, self.token = control, token
        self.lock = threading.Lock()
        self.pending: list[tuple[int, tuple[Any, ...]]] = []
        self.seq = 0
        self.wake = threading.Event()  # an event to send now

    def put(self, item: tuple[Any, ...]) -> None:
        with self.lock:
            self.seq += 1
            self.pending.append((self.seq, item))
        self.wake.set()

    def push(self, timeout: float) -> bool:
        """Send what is pending (possibly nothing); whether the run was cancelled. Raises if the driver's
        actor did not answer in `timeout` seconds."""
        import ray

        with self.lock:
            batch = list(self.pending)
        cancelled = ray.get(self.control.push.remote(self.token, batch), timeout=timeout)
        if batch:
            with self.lock:
                self.pending = [p for p in self.pending if p[0] > batch[-1][0]]
        return bool(cancelled)

    def flush(self) -> None:
        """The last events, before the node returns its result (the driver drains after the result)."""
        for _ in range(FLUSH_TRIES):
            try:
                self.push(CONTROL_POLL_SECONDS * 4)
                return
            except Exception:  # the driver is gone or out of reach: it will not want the result either
                continue


def _watch_control(outbox: Outbox, cancel: threading.Event, done: threading.Event) -> None:
    """Send the attempt's events as they come (at least every poll, which also asks for the run's cancel);
    stop the attempt when the run is cancelled, or when the driver cannot be reached any more."""
    misses = 0
    while not done.is_set():
        outbox.wake.wait(CONTROL_POLL_SECONDS)
        outbox.wake.clear()
        if done.is_set():
            return
        try:
            if outbox.push(CONTROL_POLL_SECONDS * 4) and not cancel.is_set():
                cancel.set()
            misses = 0
        except Exception:  # the actor died with its driver, or the network is out: both count
            misses += 1
            if misses >= CONTROL_MISSES:
                cancel.set()
                misses = 0  # keeps trying: the events still go if the driver comes back


def run_on_node(job: NodeJob, base: list[Any], deps: bytes | None, control: Any) -> NodeResult:
    """The remote task. To the driver's `Control` actor, under `job.token`: ("placed", node, host), then
    ("event", kind, data, state)... as the attempt makes them, all sent before this returns the result."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    host = socket.gethostname()
    outbox = Outbox(control, job.token)
    outbox.put(("placed", node, host))
    cancel, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch_control, args=(outbox, cancel, done), daemon=True,
                               name="plait-control")
    watcher.start()
    try:
        return _attempt(job, base, deps, node, host, outbox, cancel)
    finally:
        done.set()
        outbox.wake.set()
        watcher.join()
        outbox.flush()


def _attempt(job: NodeJob, base: list[Any], deps: bytes | None, node: str, host: str, outbox: Outbox,
             cancel: threading.Event) -> NodeResult:
    import ray

    from plait.run.task import run_attempt
    from plait.sandbox import support

    root = node_root() / node[:16]
    scratch = root / "attempts" / f"{job.run_id}-{job.task_id}-a{job.attempt}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    handler = logging.FileHandler(scratch / "node.log")  # moved into the evidence below
    logger = logging.getLogger("plait")
    logger.addHandler(handler)
    logger.propagate = False  # nothing of an attempt reaches the node's Ray logs
    try:
        git = cache_repository(root / "cache")
        if not has_commit(git, job.base_sha):
            unbundle(git, ray.get(base[0]), scratch)
        if deps is not None:
            unbundle(git, deps, scratch)
        repo_root = scratch / "repo"  # stands for the user's repository: its configuration, the evidence
        for rel, text in job.config.items():
            (repo_root / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo_root / rel).write_text(text)
        paths = RunPaths(repo_root, job.run_id, scratch / "workspaces")
        found = support()
        task = job.plan.task(job.task_id)
        profile = job.profiles[job.plan.agent_for(task, job.profiles)]
        if found.landlock_abi is None and profile.sandbox is SandboxMode.LANDLOCK:
            raise RuntimeError(f"profile {profile.name} asks for sandbox = \"landlock\", but node {host} cannot "
                               f"confine writes ({found.landlock_reason})")
        ctx = RunContext(plan=job.plan, git=git, paths=paths, base_sha=job.base_sha, profiles=job.profiles,
                         make_agent=job.make_agent, agent_env=job.agent_env, verify_env={},  # the node's own
                         landlock=found.landlock_abi is not None, protected=job.protected,
                         rehearsal=job.rehearsal, docs=job.docs)

        def emit(kind: EventKind, data: Mapping[str, Any], **state: Any) -> None:
            if kind is EventKind.TASK_WORKSPACE:
                data = {**data, "node": node, "host": host}
            outbox.put(("event", kind, dict(data), state))

        record = run_attempt(ctx, task, job.attempt, job.dep_commits, job.dep_contexts, cancel, emit)
        sent = [job.base_sha, *job.dep_commits.values()]
        ref = f"refs/heads/{paths.branch(job.task_id)}"
        bundle = result_bundle(git, ref, sent, scratch) if record.commit_sha and git.rev_parse(ref) else None
        folder = paths.task_dir(job.task_id)
        logs = folder / "logs" / f"attempt-{job.attempt}"
        logs.mkdir(parents=True, exist_ok=True)
        handler.close()
        shutil.move(scratch / "node.log", logs / "node.log")
        redact_files(folder)
        return NodeResult(record, bundle, tar_folder(folder), node)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()
        from plait.git import workspace

        workspace.remove(scratch)  # nothing of the attempt stays on the node but the cache's objects

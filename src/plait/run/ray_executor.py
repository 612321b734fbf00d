"""The Ray executor: a run's attempts run on the nodes of a Ray cluster (docs/ray.md).

Ray is only where attempts run. The scheduler, the journal, the conflict radar, integration, limits and
budgets stay in this process (the driver), exactly as with the local executor, so a run whose driver
died resumes from plait's own state (`plait resume`). To the engine this is an Executor: an attempt
(`run_attempt`) goes to the cluster, anything else (a level's review) runs on a thread here.

For each attempt the driver sends the attempt's base as git bundles (the plan's base once per run
through Ray's object store, fetched only by nodes whose cache lacks it; the dependencies' commits per
attempt), and the agents' environments (each profile's allow-list, nothing else). The node builds a
fresh workspace, runs the attempt with plait's own code and containment, and sends its events to a small
actor beside the driver (`Control`, not a Ray streaming generator), which the driver drains; the driver
records them as they come (so `plait status` shows the task running, and where), then takes the result
commit into the user's repository under `refs/heads/plait/...` (compare-and-swap, as a local
attempt does) and the evidence files into `.plait/`. A node lost mid-attempt: the attempt runs again on
another node, from the base. Cancel reaches the node within a second or so and stops the agents' process
groups; a node that cannot reach the driver any more stops its attempt too.
"""

from __future__ import annotations

import io
import logging
import queue
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from plait.errors import PlaitError
from plait.evidence import TaskRecord, write_evidence
from plait.git.repo import Git
from plait.plan.model import Task
from plait.roles import OVERRIDE_DIR
from plait.run import review
from plait.run.context import RunContext
from plait.run.executors import RAY_MISSING, Settings
from plait.run.ray_node import EnvTable, NodeJob, NodeResult, run_on_node
from plait.run.task import run_attempt
from plait.state import EventKind

log = logging.getLogger("plait.ray")

WAIT_SECONDS = 0.2  # how often a driver thread looks at cancel and the nodes' events while its attempt runs
CANCEL_GRACE_SECONDS = 30.0  # a cancelled node that has not answered by then is stopped by Ray itself
REACH_SECONDS = 10.0  # how long a cluster's address may take to accept a connection
MAX_NODE_LOSSES = 3  # an attempt whose node is lost more often than this fails (transiently)

Emit = Callable[..., Any]


class NodeLost(Exception):
    """The attempt's node (or its worker process) died before it answered."""


class Control:
    """The run's cancel flag as the nodes see it, and their events on the way to the driver: one small
    actor beside the driver. A node pushes its events (numbered, per try of an attempt) and learns whether
    the run was cancelled; the driver drains them."""

    def __init__(self) -> None:
        self.flag = False
        self.events: list[tuple[str, int, tuple[Any, ...]]] = []

    def cancel(self) -> None:
        self.flag = True

    def cancelled(self) -> bool:
        return self.flag

    def push(self, token: str, batch: list[tuple[int, tuple[Any, ...]]]) -> bool:
        self.events.extend((token, seq, item) for seq, item in batch)
        return self.flag

    def drain(self) -> list[tuple[str, int, tuple[Any, ...]]]:
        out, self.events = self.events, []
        return out


class Inbox:
    """The driver's side of `Control`: drains the actor (one call at a time, for every attempt) and hands
    each try's events to it in order, each once."""

    def __init__(self, control: Any) -> None:
        self.control = control
        self.lock = threading.Lock()
        self.tries: dict[str, tuple[queue.Queue[tuple[Any, ...]], list[int]]] = {}  # token -> items, last seq
        self.last = 0.0

    def open(self, token: str) -> queue.Queue[tuple[Any, ...]]:
        with self.lock:
            items: queue.Queue[tuple[Any, ...]] = queue.Queue()
            self.tries[token] = (items, [0])
            return items

    def close(self, token: str) -> None:
        with self.lock:
            self.tries.pop(token, None)

    def drain(self, now: bool = False) -> None:
        """What the nodes pushed so far, to their tries (a closed try's late events are dropped). Unless
        `now`, nothing if another attempt's thread drained a moment ago."""
        with self.lock:
            if not now and time.monotonic() - self.last < WAIT_SECONDS / 2:
                return
            self.last = time.monotonic()
            for token, seq, item in _ray().get(self.control.drain.remote()):
                found = self.tries.get(token)
                if found is None or seq <= found[1][0]:
                    continue  # a lost try's, or a batch sent again
                found[1][0] = seq
                found[0].put(item)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RAY_MISSING from None
    return ray


def _reachable(address: str | None) -> None:
    """A `HOST:PORT` cluster answers at all: Ray itself retries an unreachable address for minutes."""
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or "://" in host:
        return  # "auto", or no address: Ray finds (or starts) the cluster itself
    try:
        socket.create_connection((host, int(port)), timeout=REACH_SECONDS).close()
    except OSError as exc:
        raise PlaitError(f"no Ray cluster answers at {address}: {exc.strerror or exc}",
                         "check --address (or [executor] address in plait.toml); on a node of the cluster "
                         "`ray status` shows whether it is up") from None


def _result(ray: Any, ref: Any) -> NodeResult:
    """The node's result; an error (mapped as below) as an exception."""
    from ray.exceptions import RayError, RayTaskError, TaskCancelledError

    try:
        result: NodeResult = ray.get(ref)
    except TaskCancelledError:
        raise NodeLost("cancelled by Ray") from None
    except RayTaskError as exc:  # plait's code failed on the node: a bug, reported as such
        raise RuntimeError(f"the node failed: {exc.cause!r}") from None
    except RayError as exc:  # the node or its worker died
        raise NodeLost(f"{type(exc).__name__}: lost its node") from None
    return result


class Bundler:
    """Bundles of commits in the user's repository. git bundles name refs, and plait writes the user's
    refs only under refs/heads/plait/, so the bundles are made in a bare repository of the driver's that
    borrows the user's objects (alternates), as a workspace does."""

    def __init__(self, user: Git, folder: Path) -> None:
        self.git = Git.init(folder) if not (folder / ".git" / "HEAD").is_file() else Git(folder, folder / ".git")
        (self.git.objects_dir / "info").mkdir(parents=True, exist_ok=True)
        (self.git.objects_dir / "info" / "alternates").write_text(f"{user.objects_dir}\n")
        self.folder = folder
        self.lock = threading.Lock()  # the attempts' threads share this repository's refs

    def bundle(self, tips: Mapping[str, str], exclude: list[str]) -> bytes | None:
        """The commits `tips` (name -> sha) less everything reachable from `exclude`; None if nothing."""
        prefix = f"refs/b/{uuid.uuid4().hex}"
        refs = [f"{prefix}/{name}" for name in tips]
        path = self.folder / f"{uuid.uuid4().hex}.bundle"
        with self.lock:
            return self._bundle(refs, tips, exclude, path)

    def _bundle(self, refs: list[str], tips: Mapping[str, str], exclude: list[str], path: Path) -> bytes | None:
        try:
            for ref, sha in zip(refs, tips.values(), strict=True):
                self.git.run("update-ref", ref, sha)
            done = self.git.try_run("bundle", "create", "-q", str(path), *refs,
                                    *(["--not", *exclude] if exclude else []))
            if not done.ok and "empty bundle" in done.stderr:
                return None
            if not done.ok:
                raise RuntimeError(f"git bundle create failed: {done.stderr.strip()}")
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
            for ref in refs:
                self.git.try_run("update-ref", "-d", ref)


class RayExecutor(ThreadPoolExecutor):
    def __init__(self, ctx: RunContext, jobs: int, settings: Settings) -> None:
        super().__init__(max_workers=jobs, thread_name_prefix="plait-ray")
        ray = _ray()
        self.ctx, self.settings = ctx, settings
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            _reachable(settings.address)
            try:  # attempts' output stays in their evidence: nothing of a node's logs is printed here
                ray.init(address=settings.address, log_to_driver=False, logging_level=logging.WARNING)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... for one cause
                where = f"at {settings.address}" if settings.address else "on this machine"
                raise PlaitError(f"cannot start or reach a Ray cluster {where}: {exc}",
                                 "check --address (or [executor] address in plait.toml); on a node of the "
                                 "cluster `ray status` shows whether it is up") from None
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.control = ray.remote(num_cpus=0)(Control).options(scheduling_strategy=here).remote()
        self.inbox = Inbox(self.control)
        # Ray does not retry a lost node's attempt: this executor does, and says so in the run's events.
        self.remote = ray.remote(num_cpus=0, max_retries=0)(run_on_node)
        self.bundler = Bundler(ctx.git, ctx.paths.workspaces / "_ray")
        self._base: Any = None
        self._base_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if fn is run_attempt:
            return super().submit(self.run_attempt, *args, **kwargs)
        return super().submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        ray = _ray()
        if self.started_ray and ray.is_initialized():
            ray.shutdown()

    # -- one attempt ---------------------------------------------------------------------
    def run_attempt(self, ctx: RunContext, task: Task, attempt: int, dep_commits: Mapping[str, str],
                    dep_contexts: Mapping[str, Mapping[str, Any]], cancel: threading.Event, emit: Emit,
                    resume: tuple[str, str] | None = None) -> TaskRecord:
        """`run_attempt`, on the cluster. Never raises: what goes wrong here is the attempt's result."""
        started = time.time()
        try:
            return self._attempt(ctx, task, attempt, dep_commits, dep_contexts, cancel, emit)
        except Exception as exc:
            log.exception("task %s attempt %s failed on the Ray executor", task.id, attempt)
            transient = isinstance(exc, NodeLost)
            return self._record(task, attempt, dep_commits, started, f"ray executor: {exc}", transient)

    def _attempt(self, ctx: RunContext, task: Task, attempt: int, dep_commits: Mapping[str, str],
                 dep_contexts: Mapping[str, Mapping[str, Any]], cancel: threading.Event, emit: Emit) -> TaskRecord:
        started = time.time()
        git, ref = ctx.git, f"refs/heads/{ctx.paths.branch(task.id)}"
        old = git.rev_parse(ref)
        if old is not None:  # a failed earlier attempt: the branch starts again (as a local workspace does)
            git.delete_ref(ref, old)
        job = self._job(task, attempt, dep_commits, dep_contexts)
        deps = {d: sha for d, sha in dep_commits.items() if sha != ctx.base_sha}
        thin = self.bundler.bundle(deps, [ctx.base_sha]) if deps else None
        for lost in range(MAX_NODE_LOSSES + 1):
            try:
                result = self._run(job, thin, cancel, emit)
            except NodeLost as exc:
                if cancel.is_set() or lost == MAX_NODE_LOSSES:
                    raise
                emit(EventKind.TASK_NODE_LOST, {"attempt": attempt, "error": str(exc)})
                continue
            if result is None:
                return self._record(task, attempt, dep_commits, started, "cancelled before it started", False)
            return self._take(task, result)
        raise AssertionError("unreachable")

    def _run(self, job: NodeJob, thin: bytes | None, cancel: threading.Event, emit: Emit) -> NodeResult | None:
        """One try on some node: the result, None if cancelled before a node took it, or NodeLost."""
        ray = _ray()
        asks = self.settings.asks(self.ctx.plan.agent_for(self.ctx.plan.task(job.task_id), self.ctx.profiles))
        options = {k: v for k, v in asks.items() if k in ("num_cpus", "num_gpus", "memory")}
        custom = {k: v for k, v in asks.items() if k not in options}
        job = job.retry()
        items = self.inbox.open(job.token)
        try:
            ref = self.remote.options(**options, resources=custom).remote(job, [self._base_bundle()], thin,
                                                                          self.control)
            placed = False
            cancelled_at: float | None = None
            while True:
                if cancel.is_set():
                    if not placed:
                        ray.cancel(ref, force=True)
                        return None
                    if cancelled_at is None:
                        cancelled_at = time.time()
                        self.control.cancel.remote()
                    elif time.time() - cancelled_at > CANCEL_GRACE_SECONDS:
                        log.warning("task %s: its node did not stop it in %ss; Ray stops it", job.task_id,
                                    CANCEL_GRACE_SECONDS)
                        ray.cancel(ref, force=True)
                        raise NodeLost("cancelled; the node did not answer")
                ready, _ = ray.wait([ref], timeout=WAIT_SECONDS)
                # The node sent every event before it returned: a drain after the result has them all.
                self.inbox.drain(now=bool(ready))
                while not items.empty():
                    item = items.get()
                    if item[0] == "placed":
                        placed = True
                        log.info("task %s attempt %s placed on node %s (%s)", job.task_id, job.attempt, item[1],
                                 item[2])
                    else:
                        emit(item[1], item[2], **item[3])
                if ready:
                    return _result(ray, ref)
        finally:
            self.inbox.close(job.token)

    def _take(self, task: Task, result: NodeResult) -> TaskRecord:
        """The node's result into the user's repository and `.plait/`, as a local attempt leaves it."""
        ctx, rec = self.ctx, result.record
        git, ref = ctx.git, f"refs/heads/{ctx.paths.branch(task.id)}"
        if result.bundle is not None:
            path = self.bundler.folder / f"{uuid.uuid4().hex}-in.bundle"
            path.write_bytes(result.bundle)
            try:
                git.run("bundle", "unbundle", str(path))  # objects only; refs are plait's to move
            finally:
                path.unlink(missing_ok=True)
        if rec.commit_sha:
            if not git.is_ancestor(ctx.base_sha, rec.commit_sha):
                raise RuntimeError(f"the node's commit {rec.commit_sha} is not built on the run's base")
            git.update_ref(ref, rec.commit_sha, git.rev_parse(ref))
        folder = ctx.paths.task_dir(task.id)
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(result.evidence), mode="r:gz") as tar:
            tar.extractall(folder, filter="data")  # nothing from the node lands outside the task's folder
        return rec

    # -- what an attempt takes along ------------------------------------------------------
    def _base_bundle(self) -> Any:
        """The plan's base with its history, in Ray's object store once per run."""
        with self._base_lock:
            if self._base is None:
                data = self.bundler.bundle({"base": self.ctx.base_sha}, [])
                assert data is not None, "a commit's bundle is never empty"
                self._base = _ray().put(data)
            return self._base

    def _job(self, task: Task, attempt: int, dep_commits: Mapping[str, str],
             dep_contexts: Mapping[str, Mapping[str, Any]]) -> NodeJob:
        ctx = self.ctx
        return NodeJob(run_id=ctx.paths.run_id, plan=ctx.plan, task_id=task.id, attempt=attempt,
                       base_sha=ctx.base_sha, dep_commits=dict(dep_commits),
                       dep_contexts={k: dict(v) for k, v in dep_contexts.items()}, profiles=dict(ctx.profiles),
                       make_agent=ctx.make_agent, agent_env=self._envs(task), docs=ctx.docs,
                       protected=ctx.protected, rehearsal=ctx.rehearsal, config=self._config())

    def _envs(self, task: Task) -> EnvTable:
        """The environments of the attempt's agents: the implementer, and a reviewed task's reviewer and
        fixer in every round (their agent ids as plait.run.task and plait.run.review name them)."""
        ctx, plan = self.ctx, self.ctx.plan
        implementer = ctx.profiles[plan.agent_for(task, ctx.profiles)]
        agents = [(implementer, task.id)]
        if plan.reviewed(task) or plan.level_reviewed(task):
            reviewer, fixer = review.profiles_for(ctx.profiles, implementer)
            for n in range(1, plan.max_rounds_for(task) + 1):
                agents += [(reviewer, f"{task.id}/review-{n}"), (reviewer, f"{task.id}/review-{n}-retry"),
                           (fixer, f"{task.id}/fix-{n}")]
        envs: dict[tuple[str, str], Mapping[str, str]] = {}
        for profile, agent_id in agents:
            try:
                envs[(profile.name, agent_id)] = ctx.agent_env(profile, agent_id)
            except KeyError:  # a rehearsal scripts only the agents the plan can start
                continue
        return EnvTable(envs)

    def _config(self) -> dict[str, str]:
        """The files of the repository's root that an attempt reads its settings from (not the checkout)."""
        root = self.ctx.paths.repo_root
        found = [root / "plait.toml", root / "pyproject.toml", *sorted((root / OVERRIDE_DIR).glob("*.md"))]
        return {p.relative_to(root).as_posix(): p.read_text() for p in found if p.is_file()}

    def _record(self, task: Task, attempt: int, dep_commits: Mapping[str, str], started: float, error: str,
                transient: bool) -> TaskRecord:
        """The row of an attempt no node finished (cancelled before it was placed, its node lost too often)."""
        ctx = self.ctx
        profile = ctx.profiles[ctx.plan.agent_for(task, ctx.profiles)]
        rec = TaskRecord(run_id=ctx.paths.run_id, task_id=task.id, attempt=attempt, ok=False,
                         branch=ctx.paths.branch(task.id), base_sha=ctx.base_sha, commit_sha=None, files_changed=[],
                         deviations=[], contract_violations=[], verify=None,
                         agent={"profile": profile.name, "adapter": profile.adapter}, error=error,
                         transient=transient, started_at=started, finished_at=time.time(),
                         dependencies=list(dep_commits), profile=profile.name, rehearsal=ctx.rehearsal)
        write_evidence(ctx.paths.task_dir(task.id), rec, task, ctx.plan)
        return rec

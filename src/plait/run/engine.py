"""The run loop: schedule ready tasks onto worker threads, record every change, react to results
(retry, block, radar, a failed gate), then integrate, deliver and report.

The loop owns the Scheduler and is the only place run-level decisions are made; attempts run on a
thread pool (the Executor boundary: Ray can take this place) and report back TaskRecords.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from plait import graph
from plait.agents.base import ErrorKind
from plait.clock import Clock, RealClock
from plait.evidence import TaskRecord
from plait.git import merge
from plait.plan.model import Plan
from plait.run import integrate, levels, merged
from plait.run.executors import make_executor
from plait.run.limits import AdaptiveLimits
from plait.run.task import RunContext, run_attempt
from plait.schedule import Job, Scheduler
from plait.state import EventKind, Store, TaskState

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.5  # how often the watcher looks for `plait cancel` (and writes the heartbeat)
POLL_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 60.0
MAX_RETRY_AFTER_SECONDS = 600.0  # a provider's retry-after is honoured up to this


@dataclass(frozen=True)
class RunOptions:
    jobs: int = 4
    deliver: str = "branch"  # "branch" | "stack"
    max_cost: float | None = None
    retry_base_seconds: float = 1.0
    rehearse: bool = False  # real agent CLIs against plait's scripted model server
    rehearse_latency: float = 0.0  # seconds per scripted model turn
    relax_phases: bool = False  # a phased plan keeps only its stated dependencies
    agent: str | None = None  # the profile for tasks that name none, over the plan's `defaults.agent`
    fresh: bool = False  # run every task: reuse no earlier run's verified work (plait.run.reuse)
    executor: str | None = None  # "local" | "ray"; None: plait.toml's [executor], else local
    address: str | None = None  # the Ray cluster (`--address`); None: plait.toml's, else a private one
    history: bool = True  # schedule by estimates learned from earlier runs' durations (plait.history)


Listener = Callable[[str, str | None, Mapping[str, Any]], None]


class Engine:
    def __init__(self, ctx: RunContext, store: Store, options: RunOptions, listener: Listener | None = None,
                 clock: Clock | None = None, executor: Executor | None = None) -> None:
        self.ctx, self.store, self.options = ctx, store, options
        self.run_id = ctx.paths.run_id
        self.listener = listener or (lambda kind, task, data: None)
        self.clock = clock or RealClock()
        self.executor = executor or make_executor(ctx, options)  # threads here, or a Ray cluster
        self.random = random.Random()  # back-off jitter; tests may seed it
        self.cancel = threading.Event()  # set: running attempts and the integration test stop
        self._cancel_recorded = False
        self._finished = threading.Event()
        plan = ctx.plan
        self.plan: Plan = plan
        self.tasks = {t.id: t for t in plan.tasks}  # Plan.task looks through the list: too slow per event
        jobs = [Job(t.id, tuple(t.needs), t.seconds, plan.agent_for(t, ctx.profiles)) for t in plan.tasks]
        ceilings = {name: min(p.concurrency or options.jobs, options.jobs) for name, p in ctx.profiles.items()}
        self.limits = AdaptiveLimits(ceilings)
        self.sched = Scheduler(jobs, options.jobs, dict(self.limits.current))
        self.commits: dict[str, str] = {}
        self.contexts: dict[str, dict[str, Any]] = {}
        self.attempts: dict[str, int] = {}  # attempt numbers continue across resumes
        self.tries: dict[str, int] = {}  # attempts started by this process: what the retry limit counts
        self.resumable: dict[str, tuple[str, str]] = {}  # task -> (agent session, worktree base)
        merges = merge.Merges()  # the radar's and the integration's merges: often the same head on the same tree
        # Every finished task that merges, in order; no ref names its commits.
        self.radar = merge.Chain(ctx.git, ctx.base_sha, "radar", merges, internal=True)
        self.radar_left_out: set[str] = set()  # finished tasks the radar found in conflict
        # Where the finished tasks changed the tree: a task clear of all of them cannot conflict, and waits (in
        # `radar_waiting`) to be merged until one that could comes. None once that is not known for one.
        self.radar_footprint: merge.Footprint | None = merge.Footprint()
        self.radar_waiting: list[tuple[str, str, list[str]]] = []  # (task, commit, starts), in finishing order
        # The radar and the integration's merge advance on a thread of their own as tasks finish (in the order
        # they finish), so the loop starts the next task at once and the run's end has little left to merge.
        self.merger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plait-merge")
        # The radar merges on a thread of its own: with a thread for both, a fast run's last tasks waited for
        # seconds after the last one finished (each merge is three git processes; both cores do them now).
        self.radar_merger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plait-radar")
        self.weaving: list[Future[None]] = []  # the integration's merges, whose errors are the run's
        # (task, report its conflicts, the merge's future) for each finished task, in the order they finished
        self.merging: list[tuple[str, bool, Future[list[dict[str, Any]]] | None]] = []
        self.radar_seen: dict[str, str] = {}  # what finished, in order: a task's starts and a conflict's partners
        self.order = graph.topological_order({t.id: list(t.needs) for t in plan.tasks})  # the integration's
        self.weave = integrate.Weave(ctx, self.order, merges)
        self.woven: dict[str, str] = {}  # the merger's copy of `commits`
        self.spent = 0.0
        self.stopped_for_budget = False
        self.failed_gate: str | None = None  # a gate task failed: nothing new starts
        self.errors: dict[str, str] = {}  # failed task -> why: what the run's end says
        # `review: per-level` tasks wait, verified, for one review of their dependency level (plait.run.levels).
        self.level = graph.levels({t.id: list(t.needs) for t in plan.tasks})
        self.level_reviewed = {t.id for t in plan.tasks if plan.level_reviewed(t)}
        self.level_tasks: dict[int, list[str]] = {}  # level -> its per-level tasks, in plan order
        for tid in (t.id for t in plan.tasks if t.id in self.level_reviewed):
            self.level_tasks.setdefault(self.level[tid], []).append(tid)
        self.held: dict[str, TaskRecord] = {}  # verified, waiting for their level's review

    # -- events ------------------------------------------------------------------------
    def emit(self, kind: EventKind, task_id: str | None = None, data: Mapping[str, Any] | None = None,
             **state: Any) -> None:
        self.store.emit(self.run_id, kind, task_id, data, **state)
        self.listener(kind, task_id, data or {})

    def _task_emitter(self, task_id: str) -> Callable[..., Any]:
        def emit(kind: EventKind, data: Mapping[str, Any], **state: Any) -> None:
            self.emit(kind, task_id, data, **state)
        return emit

    # -- resume ------------------------------------------------------------------------
    def restore(self) -> None:
        """Take finished work from an earlier process (`plait resume`), or that `plait run` took from an
        earlier run (plait.run.reuse): a task whose branch still holds its recorded, verified commit is done
        and never runs again; everything else starts over."""
        branches = self.ctx.git.list_refs(f"refs/heads/plait/{self.run_id}/")  # one git for every task's branch
        for row in self.store.tasks(self.run_id):
            tid = row["task_id"]
            self.attempts[tid] = row["attempt"] or 0
            branch_sha = branches.get(f"refs/heads/{self.ctx.paths.branch(tid)}")
            if row["state"] == TaskState.DONE and row["commit_sha"] and branch_sha == row["commit_sha"]:
                self.sched.mark_done(tid)
                self.commits[tid] = row["commit_sha"]
                ctx_file = self.ctx.paths.task_dir(tid) / "context.json"
                if ctx_file.exists():
                    self.contexts[tid] = json.loads(ctx_file.read_text())
                self._merge_finished(tid, row["commit_sha"], report=False)
            elif row["state"] != TaskState.PENDING:
                self.emit(EventKind.TASK_RESET, tid, {"was": row["state"]},
                          task={"state": TaskState.PENDING, "error": None, "review_json": None})

    # -- main loop ---------------------------------------------------------------------
    def execute(self) -> str:
        self.emit(EventKind.RUN_STARTED, None, {"pid": os.getpid(), "jobs": self.options.jobs},
                  run={"status": "running", "pid": os.getpid(), "started_at": time.time()})
        merged.write_parent(self.ctx)  # the feature, tasks, contracts and criteria, before any task starts
        running: dict[Future[TaskRecord], str] = {}
        watcher = threading.Thread(target=self._watch, name="plait-watch", daemon=True)
        watcher.start()
        try:
            return self._run_loop(running)
        finally:
            self._finished.set()
            watcher.join()

    def _watch(self) -> None:
        """For the run's whole life (integration included): notice `plait cancel` (it writes the run's
        status) and stop running work at once, and keep the heartbeat shown by `plait status`.
        Its own connection: the store's is the engine thread's."""
        store = Store(self.store.path)
        try:
            while not self._finished.wait(WATCH_SECONDS):
                store.heartbeat(self.run_id)
                row = store.run(self.run_id)
                if row and row["status"] == "cancelling":
                    self.cancel.set()
        finally:
            store.close()

    def _run_loop(self, running: dict[Future[TaskRecord], str]) -> str:
        reviews: dict[Future[levels.LevelOutcome], int] = {}
        try:
            while True:
                self._check_cancel()
                stopped = self.cancel.is_set() or self.stopped_for_budget or self.failed_gate is not None
                if not stopped:
                    self.sched.profile_limits = dict(self.limits.current)
                    for tid in self.sched.next_to_start(self.clock.now()):
                        running[self._start(tid)] = tid
                    for level in self._levels_due():
                        reviews[self._start_review(level)] = level
                if not running and not reviews:
                    wake = self.sched.next_wakeup()
                    if wake is None or stopped:
                        break
                    self.clock.sleep(max(0.0, min(POLL_SECONDS * 4, wake - self.clock.now())))
                    continue
                waiting: list[Future[Any]] = [*running, *reviews]
                finished, _ = wait(waiting, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for fut in [f for f in running if f in finished]:
                    self._finish(running.pop(fut), fut)
                self._radar_reports(wait_all=False)
                for review in [f for f in reviews if f in finished]:
                    self._finish_review(reviews.pop(review), review)
        except BaseException:
            self.cancel.set()
            started: list[Future[Any]] = [*running, *reviews]
            for fut in started:
                fut.cancel()
            raise
        finally:
            self.executor.shutdown(wait=True)
            self.merger.shutdown(wait=True, cancel_futures=self.cancel.is_set())
            self.radar_merger.shutdown(wait=True, cancel_futures=self.cancel.is_set())
        self._radar_reports(wait_all=True)
        self._unreviewed()
        return self._conclude()

    def _start(self, tid: str) -> Future[TaskRecord]:
        task = self.tasks[tid]
        self.sched.start(tid)
        attempt = self.attempts.get(tid, 0) + 1
        self.attempts[tid] = attempt
        self.tries[tid] = self.tries.get(tid, 0) + 1
        now = time.time()
        resume = self.resumable.pop(tid, None)
        self.emit(EventKind.TASK_STARTED, tid, {"attempt": attempt,
                                                "profile": self.plan.agent_for(task, self.ctx.profiles),
                                                "resume_session": resume[0] if resume else None},
                  task={"state": TaskState.RUNNING, "attempt": attempt, "started_at": now, "finished_at": None,
                        "error": None, "branch": self.ctx.paths.branch(tid), "review_json": None},
                  attempt={"attempt": attempt, "started_at": now, "outcome": "running"})
        deps = {d: self.commits[d] for d in task.needs}
        contexts = {d: self.contexts.get(d, {}) for d in task.needs}
        return self.executor.submit(run_attempt, self.ctx, task, attempt, deps, contexts, self.cancel,
                                    self._task_emitter(tid), resume)

    def _finish(self, tid: str, fut: Future[TaskRecord]) -> None:
        try:
            rec = fut.result()
        except Exception as exc:  # run_attempt maps every stage's exception; this is the last guard
            self._fail(tid, f"internal error: {exc!r}", TaskState.FAILED)
            return
        now = time.time()
        throttled = rec.error_kind in (ErrorKind.RATE_LIMIT, ErrorKind.OVERLOADED)
        if throttled:
            limit = self.limits.throttled(rec.profile)
            self.emit(EventKind.LIMITS_BACKOFF, tid, {"profile": rec.profile, "concurrency": limit,
                                                      "reason": str(rec.error_kind)})
        elif rec.ok:
            before = self.limits.current.get(rec.profile)
            if self.limits.succeeded(rec.profile) != before:
                self.emit(EventKind.LIMITS_INCREASE, tid, {"profile": rec.profile,
                                                           "concurrency": self.limits.current[rec.profile]})
        self.spent += rec.cost_usd or 0.0
        retry = (not rec.ok and rec.transient and not self.cancel.is_set()
                 and self.tries.get(tid, 0) <= self.plan.defaults.retries)
        outcome = "verified" if rec.ok else "retry" if retry else "failed"  # the last failure is "failed"
        self.emit(EventKind.TASK_ATTEMPT_DONE, tid, {"attempt": rec.attempt, "outcome": outcome, "error": rec.error},
                  attempt={"attempt": rec.attempt, "finished_at": now, "outcome": outcome, "error": rec.error,
                           "error_kind": rec.error_kind})
        if rec.ok and rec.commit_sha and tid in self.level_reviewed:
            self.sched.hold(tid)  # verified, but done only once its level's review approves it
            self.held[tid] = rec
        elif rec.ok and rec.commit_sha:
            self._done(tid, rec.commit_sha, (rec.files_changed, rec.files_deleted))
        elif retry:
            if rec.session_id and throttled:
                self.resumable[tid] = (rec.session_id, rec.base_sha)
            delay = self.backoff(self.tries[tid], rec.retry_after)
            self.sched.retry(tid, self.clock.now() + delay)
            self.emit(EventKind.TASK_RETRY, tid, {"attempt": rec.attempt, "delay": delay, "error": rec.error,
                                                  "kind": rec.error_kind, "retry_after": rec.retry_after},
                      task={"state": TaskState.RETRYING, "error": rec.error})
        else:
            self._failed_for_good(tid, rec.error)
        self._check_budget()

    def _done(self, tid: str, commit: str, changes: tuple[list[str], list[str]]) -> None:
        """A task verified (and reviewed): `changes` are its files changed and, among them, deleted."""
        files = changes[0]
        self.sched.mark_done(tid)
        self.commits[tid] = commit
        ctx_file = self.ctx.paths.task_dir(tid) / "context.json"
        self.contexts[tid] = json.loads(ctx_file.read_text()) if ctx_file.exists() else {}
        self.emit(EventKind.TASK_DONE, tid, {"commit": commit, "files": files},
                  task={"state": TaskState.DONE, "commit_sha": commit, "finished_at": time.time()})
        self._merge_finished(tid, commit, report=True, changes=changes)

    def _failed_for_good(self, tid: str, error: str) -> None:
        self._fail(tid, error, TaskState.CANCELLED if self.cancel.is_set() else TaskState.FAILED)
        if self.tasks[tid].gate and not self.cancel.is_set():
            self._stop_for_gate(tid, error)

    # -- per-level review ----------------------------------------------------------------
    def _levels_due(self) -> list[int]:
        """Levels whose per-level tasks have all finished (verified, or failed for good), some verified. Only the
        levels of held tasks are looked at: nothing, in a plan without per-level review."""
        unsettled = self.sched.pending, self.sched.running
        return sorted(level for level in {self.level[t] for t in self.held}
                      if not any(t in s for t in self.level_tasks[level] for s in unsettled))

    def _start_review(self, level: int) -> Future[levels.LevelOutcome]:
        records = [self.held.pop(t) for t in self.level_tasks[level] if t in self.held]
        return self.executor.submit(levels.review_level, self.ctx, level, records, self._task_emitter, self.cancel)

    def _finish_review(self, level: int, fut: Future[levels.LevelOutcome]) -> None:
        outcome = fut.result()  # review_level never raises: its failures are the tasks' results
        self.spent += outcome.cost_usd
        for rec in outcome.records:
            if rec.ok and rec.commit_sha:
                self._done(rec.task_id, rec.commit_sha, (rec.files_changed, rec.files_deleted))
            else:
                self._failed_for_good(rec.task_id, rec.error)
        self._check_budget()

    def _unreviewed(self) -> None:
        """Verified tasks whose level review never started (the run stopped first): each gets its row."""
        for tid in list(self.held):
            del self.held[tid]
            self._fail(tid, "not reviewed: the run stopped before its level's review", TaskState.CANCELLED)

    def backoff(self, tries: int, retry_after: float | None) -> float:
        """Exponential back-off with full jitter (so throttled agents do not all come back at once), and
        never sooner than the provider's retry-after."""
        ceiling = min(MAX_BACKOFF_SECONDS, self.options.retry_base_seconds * 2 ** (tries - 1))
        delay = self.random.uniform(ceiling / 2, ceiling)
        return round(max(delay, min(retry_after or 0.0, MAX_RETRY_AFTER_SECONDS)), 3)

    def _fail(self, tid: str, error: str, state: TaskState) -> None:
        self.errors[tid] = error
        blocked = self.sched.fail(tid)
        self.emit(EventKind.TASK_FAILED, tid, {"error": error, "blocks": blocked},
                  task={"state": state, "error": error, "finished_at": time.time()})
        why = f"gate {tid} failed" if self.tasks[tid].gate else f"needs {tid}, which failed"
        for b in blocked:
            self.emit(EventKind.TASK_BLOCKED, b, {"by": tid}, task={"state": TaskState.BLOCKED, "error": why})

    def _stop_for_gate(self, tid: str, error: str) -> None:
        """A gate is a checkpoint: when it fails (for good), nothing new starts; running tasks finish."""
        self.failed_gate = tid
        left = self.sched.stop_new()
        self.emit(EventKind.RUN_GATE_FAILED, None, {"gate": tid, "error": error, "not_started": left})
        for other in left:
            self.emit(EventKind.TASK_CANCELLED, other, {"why": f"gate {tid} failed"},
                      task={"state": TaskState.CANCELLED, "error": f"not started: gate {tid} failed"})

    def _check_cancel(self) -> None:
        if self.cancel.is_set() and not self._cancel_recorded:
            self.request_cancel("plait cancel")

    def request_cancel(self, why: str) -> None:
        """Stop the run: running work stops (it watches `cancel`), nothing new starts."""
        self.cancel.set()
        if self._cancel_recorded:
            return
        self._cancel_recorded = True
        left = self.sched.stop_new()
        self.emit(EventKind.RUN_CANCELLING, None, {"why": why, "not_started": left}, run={"status": "cancelling"})
        for tid in left:
            self.emit(EventKind.TASK_CANCELLED, tid, {}, task={"state": TaskState.CANCELLED})

    def _check_budget(self) -> None:
        limit = self.options.max_cost
        if limit is None or self.stopped_for_budget or self.spent < limit:
            return
        self.stopped_for_budget = True
        left = self.sched.stop_new()
        self.emit(EventKind.RUN_BUDGET_SPENT, None, {"spent": self.spent, "max_cost": limit, "not_started": left})
        for tid in left:
            self.emit(EventKind.TASK_CANCELLED, tid, {"why": "budget"},
                      task={"state": TaskState.CANCELLED, "error": f"--max-cost {limit} spent"})

    # -- conflict radar and the integration's merge, on the merger thread ----------------------------------
    def _merge_finished(self, tid: str, commit: str, report: bool,
                        changes: tuple[list[str], list[str]] | None = None) -> None:
        """A finished task: merged as far as it lets the integration's merge go, and into the radar (a dry-run
        merge with everything finished before it), whose conflicts the loop reports (with `report`). `changes`:
        its files changed and deleted, when known. A task the radar's footprint clears cannot conflict: it waits,
        unmerged, for the next one that could (this thread decides; the radar's thread merges)."""
        self.weaving.append(self.merger.submit(self._weave, tid, commit))
        needs = self.tasks[tid].needs
        starts = [self.radar_seen[d] for d in needs if d in self.radar_seen] if needs else [self.ctx.base_sha]
        self.radar_seen[tid] = commit
        if changes is None:  # a task restored from before: where it changed the tree is not known here
            self.radar_footprint = None
        elif self.radar_footprint is not None:
            clear = self.radar_footprint.clear_of(*changes)
            self.radar_footprint.add(*changes)
            if clear:
                self.radar_waiting.append((tid, commit, starts))
                self.merging.append((tid, report, None))
                return
        waiting, self.radar_waiting = self.radar_waiting, []
        before = {t: c for t, c in self.radar_seen.items() if t != tid}  # what it may conflict with
        self.merging.append((tid, report, self.radar_merger.submit(self._radar_merge, tid, commit, starts, waiting,
                                                                   before)))

    def _weave(self, tid: str, commit: str) -> None:
        self.woven[tid] = commit
        self.weave.advance(self.woven)

    def _radar_merge(self, tid: str, commit: str, starts: list[str], waiting: list[tuple[str, str, list[str]]],
                     before: dict[str, str]) -> list[dict[str, Any]]:
        """On the radar's thread: the tasks that waited (clear of one another and of all before them: they merge
        cleanly), then `tid`; its conflicts with the tasks finished `before` it."""
        for name, sha, its_starts in waiting:
            if self.radar.add(name, sha, its_starts) is not None:
                log.warning("the conflict radar found %s in conflict after all", name)
                self.radar_left_out.add(name)
        conflict = self.radar.add(tid, commit, starts)
        if conflict is None:
            return []
        self.radar_left_out.add(tid)
        # Every task finished before it that clashes with it on its own (those the radar left out too).
        suspects = set(conflict.conflicts_with) | self.radar_left_out
        found = [{"with": other, "files": list(files)} for other, sha in before.items()
                 if other in suspects and (files := merge.would_conflict(self.ctx.git, sha, commit))]
        # No single task clashes: only the combination of earlier work does.
        return found or [{"with": "the merge of the tasks finished before it", "files": list(conflict.files)}]

    def _radar_reports(self, wait_all: bool) -> None:
        """Report the radar's conflicts of the tasks merged so far (all of them, waiting, with `wait_all`); an
        error of the integration's merge is raised here, on the loop's thread."""
        while self.weaving and (wait_all or self.weaving[0].done()):
            woven = self.weaving.pop(0)
            if not woven.cancelled():
                woven.result()
        while self.merging and (wait_all or self.merging[0][2] is None or self.merging[0][2].done()):
            tid, report, fut = self.merging.pop(0)
            if fut is None or fut.cancelled():  # cleared by the footprint: nothing to report
                continue
            found = fut.result()
            for i, data in enumerate(found if report else [], start=1):
                self.emit(EventKind.TASK_CONFLICT, tid, data, task={"conflicts_json": json.dumps(found[:i])})

    # -- end of the run -----------------------------------------------------------------
    def _conclude(self) -> str:
        failed = self.sched.failed or self.sched.blocked
        result: integrate.IntegrationResult | None = None
        if self.cancel.is_set():
            status = "cancelled"
        elif failed or self.stopped_for_budget or self.failed_gate:
            status = "failed"
        else:
            result = integrate.integrate(self.ctx, self.commits, self.order, self.options.deliver, self.emit,
                                         self.cancel, self.weave)
            status = "cancelled" if self.cancel.is_set() else "completed" if result.ok else "failed"
        # What the parallel work adds up to, integrated or not (written also when the integration failed).
        try:
            merged.write_merged(self.ctx, self.store.tasks(self.run_id), status, result)
        except OSError as exc:  # a full disk must not keep the run from ending
            log.warning("could not write the merged context: %s", exc)
        self.emit(EventKind.RUN_FINISHED, None, {"status": status, "why": self._why(status, result)},
                  run={"status": status, "finished_at": time.time()})
        return status

    def _why(self, status: str, result: integrate.IntegrationResult | None = None) -> str:
        """One line on why a run failed: a failed gate, else its failed tasks, the budget, the integration."""
        if status != "failed":
            return ""
        if self.failed_gate:
            return f"gate {self.failed_gate} failed, so nothing after it started ({self.errors[self.failed_gate]})"
        failed = [f"{t}: {e}" for t, e in self.errors.items()]
        if failed:
            return "; ".join(failed[:3]) + (f" (+{len(failed) - 3} more)" if len(failed) > 3 else "")
        if self.stopped_for_budget:
            return f"--max-cost {self.options.max_cost} spent before every task could start"
        return f"{result.error if result and result.error else 'the integration failed'}: see INTEGRATION-REPORT.md"

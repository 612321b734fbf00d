"""Dependency-driven list scheduling, critical-path first. Pure: no I/O, no clock of its own.

A task becomes ready the moment all its `needs` are done (never at a phase barrier); among ready
tasks the one with the longest remaining path (bottom level by estimate) starts first. Limits:
a global job count and per-profile caps that may change while running (adaptive back-off).
Retries carry a `not_before` time, so callers pass `now` from whatever clock they use; the same
code drives the live engine and the discrete-event simulator below.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from plait import graph


@dataclass(frozen=True)
class Job:
    id: str
    needs: tuple[str, ...]
    weight: float  # estimated seconds; only the ordering of priorities matters
    profile: str = "default"


@dataclass
class Scheduler:
    """The live engine's scheduling state. Incremental, so each event costs about O(log n), not O(n): a task
    joins the ready set when its last need is done (a count per task), and ready tasks wait in one heap per
    profile, best first. Heap entries are dropped lazily once their task is no longer ready."""

    jobs: Sequence[Job]
    max_jobs: int
    profile_limits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
        self._by_id = {j.id: j for j in self.jobs}
        needs = {j.id: list(j.needs) for j in self.jobs}
        self.priority = graph.bottom_levels(needs, {j.id: j.weight for j in self.jobs})
        self._order = {j.id: i for i, j in enumerate(self.jobs)}
        self.pending: set[str] = set(self._by_id)
        self.running: set[str] = set()
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.blocked: set[str] = set()
        self.not_before: dict[str, float] = {}
        # A need outside the jobs is never done, so it keeps its task waiting for good.
        self._waiting = {j.id: len(set(j.needs)) for j in self.jobs}
        self._users: dict[str, list[str]] = {j.id: [] for j in self.jobs}
        for j in self.jobs:
            for dep in set(j.needs) & self._by_id.keys():
                self._users[dep].append(j.id)
        self._ready: set[str] = set()  # pending, every need done (a retry delay may still hold it back)
        self._queues: dict[str, list[tuple[float, int, str]]] = {}  # profile -> heap of (-priority, order, id)
        self._queued: set[str] = set()  # tasks with an entry in a heap: one entry each
        for t in self.jobs:
            self._become_ready(t.id)

    # -- queries ---------------------------------------------------------------
    def ready(self, now: float = 0.0) -> list[str]:
        """Pending tasks whose needs are all done and whose retry delay has passed, best first."""
        ready = [t for t in self._ready if self.not_before.get(t, 0.0) <= now]
        return sorted(ready, key=self._key)

    def running_for(self, profile: str) -> int:
        return sum(1 for t in self.running if self._by_id[t].profile == profile)

    def next_to_start(self, now: float = 0.0) -> list[str]:
        """The tasks to start now, within the job and per-profile limits (does not start them): the best ready
        task of any profile below its limit, again and again."""
        free = self.max_jobs - len(self.running)
        used = Counter(self._by_id[t].profile for t in self.running)
        chosen: list[str] = []
        popped: list[tuple[float, int, str]] = []
        queues = {profile: queue for profile, queue in self._queues.items() if queue}
        while free > 0 and queues:
            profile = min(queues, key=lambda p: queues[p][0])
            limit = self.profile_limits.get(profile)
            if limit is not None and used[profile] >= limit:
                del queues[profile]
                continue
            entry = heapq.heappop(queues[profile])
            self._queued.discard(entry[2])
            if not queues[profile]:
                del queues[profile]
            if entry[2] not in self._ready:
                continue  # started, done or blocked since it was queued
            popped.append(entry)
            if self.not_before.get(entry[2], 0.0) <= now:
                chosen.append(entry[2])
                used[profile] += 1
                free -= 1
        for entry in popped:  # nothing starts here: every ready task stays queued
            self._queue(entry[2])
        return chosen

    def next_wakeup(self) -> float | None:
        """The earliest retry time among pending tasks that wait only on a delay."""
        return min((at for t, at in self.not_before.items() if t in self._ready), default=None)

    @property
    def settled(self) -> bool:
        return not self.running and not self._ready

    # -- transitions -----------------------------------------------------------
    def start(self, task: str) -> None:
        self.pending.remove(task)
        self._ready.discard(task)
        self.running.add(task)

    def mark_done(self, task: str) -> None:
        """Record a task that finished earlier (resume) or just now."""
        self.pending.discard(task)
        self._ready.discard(task)
        self.running.discard(task)
        if task in self.done:
            return
        self.done.add(task)
        for user in self._users.get(task, ()):
            self._waiting[user] -= 1
            self._become_ready(user)

    def hold(self, task: str) -> None:
        """A task that finished its work but is not done yet (it waits for its level's review): it frees its
        slot and releases no dependent; `mark_done` or `fail` settles it."""
        self.running.discard(task)

    def retry(self, task: str, not_before: float) -> None:
        self.running.discard(task)
        self.pending.add(task)
        self.not_before[task] = not_before
        self._become_ready(task)

    def fail(self, task: str) -> list[str]:
        """Mark a task failed; every pending task that transitively needs it is blocked."""
        self.running.discard(task)
        self.pending.discard(task)
        self._ready.discard(task)
        self.failed.add(task)
        newly: list[str] = []
        frontier = [task]
        while frontier:
            for user in self._users.get(frontier.pop(), ()):
                if user in self.pending:
                    self.pending.remove(user)
                    self._ready.discard(user)
                    self.blocked.add(user)
                    newly.append(user)
                    frontier.append(user)
        return newly

    def stop_new(self) -> list[str]:
        """Cancel everything not started (budget spent, cancel requested); running tasks go on."""
        left = sorted(self.pending, key=self._order.__getitem__)
        self.pending.clear()
        self._ready.clear()
        self.blocked.update(left)
        return left

    # -- the ready set ---------------------------------------------------------
    def _key(self, task: str) -> tuple[float, int]:
        return -self.priority[task], self._order[task]

    def _become_ready(self, task: str) -> None:
        if task in self.pending and not self._waiting[task]:
            self._ready.add(task)
            self._queue(task)

    def _queue(self, task: str) -> None:
        if task not in self._queued:
            self._queued.add(task)
            heapq.heappush(self._queues.setdefault(self._by_id[task].profile, []), (*self._key(task), task))


@dataclass(frozen=True)
class Simulation:
    makespan: float
    spans: dict[str, tuple[float, float]]  # task -> (start, end)


def simulate(jobs: Sequence[Job], max_jobs: int, durations: Mapping[str, float] | None = None) -> Simulation:
    """Discrete-event run of the live scheduling policy with known durations (estimates by default)."""
    durations = durations or {j.id: j.weight for j in jobs}
    sched = Scheduler(jobs, max_jobs)
    now = 0.0
    events: list[tuple[float, int, str]] = []
    spans: dict[str, tuple[float, float]] = {}
    seq = 0
    while True:
        for t in sched.next_to_start(now):
            sched.start(t)
            heapq.heappush(events, (now + durations[t], seq, t))
            spans[t] = (now, now + durations[t])
            seq += 1
        if not events:
            break
        now, _, finished = heapq.heappop(events)
        sched.mark_done(finished)
        # Everything finishing at the same instant frees its slot before new work starts.
        while events and events[0][0] == now:
            sched.mark_done(heapq.heappop(events)[2])
    return Simulation(max((e for _, e in spans.values()), default=0.0), spans)


def simulate_barriers(jobs: Sequence[Job], max_jobs: int, durations: Mapping[str, float] | None = None) -> float:
    """Makespan if each level (phase) must finish before the next starts: longest task first inside a level."""
    durations = durations or {j.id: j.weight for j in jobs}
    level = graph.levels({j.id: list(j.needs) for j in jobs})
    phases: dict[int, list[Job]] = {}
    for j in jobs:
        phases.setdefault(level[j.id], []).append(Job(j.id, (), j.weight, j.profile))
    return sum((simulate(phases[depth], max_jobs, durations).makespan for depth in sorted(phases)), 0.0)


def lower_bound(weights: Iterable[float], critical_path: float, max_jobs: int) -> float:
    return max(critical_path, sum(weights) / max_jobs)

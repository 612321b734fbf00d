"""Dependency-driven list scheduling, critical-path first. Pure: no I/O, no clock of its own.

A task becomes ready the moment all its `needs` are done (never at a phase barrier); among ready
tasks the one with the longest remaining path (bottom level by estimate) starts first. Limits:
a global job count and per-profile caps that may change while running (adaptive back-off).
Retries carry a `not_before` time, so callers pass `now` from whatever clock they use; the same
code drives the live engine and the discrete-event simulator below.
"""

from __future__ import annotations

import heapq
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

    # -- queries ---------------------------------------------------------------
    def ready(self, now: float = 0.0) -> list[str]:
        """Pending tasks whose needs are all done and whose retry delay has passed, best first."""
        ready = [
            t
            for t in self.pending
            if all(d in self.done for d in self._by_id[t].needs) and self.not_before.get(t, 0.0) <= now
        ]
        return sorted(ready, key=lambda t: (-self.priority[t], self._order[t]))

    def running_for(self, profile: str) -> int:
        return sum(1 for t in self.running if self._by_id[t].profile == profile)

    def next_to_start(self, now: float = 0.0) -> list[str]:
        """The tasks to start now, within the job and per-profile limits (does not start them)."""
        free = self.max_jobs - len(self.running)
        chosen: list[str] = []
        used: dict[str, int] = {}
        for t in self.ready(now):
            if free <= 0:
                break
            profile = self._by_id[t].profile
            limit = self.profile_limits.get(profile)
            if limit is not None and self.running_for(profile) + used.get(profile, 0) >= limit:
                continue
            chosen.append(t)
            used[profile] = used.get(profile, 0) + 1
            free -= 1
        return chosen

    def next_wakeup(self) -> float | None:
        """The earliest retry time among pending tasks that wait only on a delay."""
        times = [
            self.not_before[t]
            for t in self.pending
            if t in self.not_before and all(d in self.done for d in self._by_id[t].needs)
        ]
        return min(times, default=None)

    @property
    def settled(self) -> bool:
        return not self.running and not self.ready(float("inf"))

    # -- transitions -----------------------------------------------------------
    def start(self, task: str) -> None:
        self.pending.remove(task)
        self.running.add(task)

    def mark_done(self, task: str) -> None:
        """Record a task that finished earlier (resume) or just now."""
        self.pending.discard(task)
        self.running.discard(task)
        self.done.add(task)

    def hold(self, task: str) -> None:
        """A task that finished its work but is not done yet (it waits for its level's review): it frees its
        slot and releases no dependent; `mark_done` or `fail` settles it."""
        self.running.discard(task)

    def retry(self, task: str, not_before: float) -> None:
        self.running.discard(task)
        self.pending.add(task)
        self.not_before[task] = not_before

    def fail(self, task: str) -> list[str]:
        """Mark a task failed; every pending task that transitively needs it is blocked."""
        self.running.discard(task)
        self.pending.discard(task)
        self.failed.add(task)
        newly: list[str] = []
        frontier = [task]
        while frontier:
            current = frontier.pop()
            for t in list(self.pending):
                if current in self._by_id[t].needs:
                    self.pending.remove(t)
                    self.blocked.add(t)
                    newly.append(t)
                    frontier.append(t)
        return newly

    def stop_new(self) -> list[str]:
        """Cancel everything not started (budget spent, cancel requested); running tasks go on."""
        left = sorted(self.pending, key=self._order.__getitem__)
        self.pending.clear()
        self.blocked.update(left)
        return left


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
    total = 0.0
    for depth in sorted(set(level.values())):
        phase = [j for j in jobs if level[j.id] == depth]
        total += simulate([Job(j.id, (), j.weight, j.profile) for j in phase], max_jobs, durations).makespan
    return total


def lower_bound(weights: Iterable[float], critical_path: float, max_jobs: int) -> float:
    return max(critical_path, sum(weights) / max_jobs)

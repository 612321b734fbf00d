"""`plait check`'s analysis as it was before issue 13, kept only as the reference the tests compare with.

- `Rescanning`: `plait.schedule.Scheduler` when every query rescanned every pending task;
- `simulate` / `simulate_barriers`: the discrete-event estimate driving it;
- `analyze_before`: every agent count from 1 to the widest level simulated that way, and file overlaps
  compared pair by pair of tasks with `patterns_overlap` (every finding listed, none counted).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from plait import graph
from plait.plan.analyze import KNEE, patterns_overlap
from plait.plan.model import Plan
from plait.schedule import Job


@dataclass
class Rescanning:
    jobs: Sequence[Job]
    max_jobs: int
    profile_limits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id = {j.id: j for j in self.jobs}
        self.priority = graph.bottom_levels({j.id: list(j.needs) for j in self.jobs},
                                            {j.id: j.weight for j in self.jobs})
        self._order = {j.id: i for i, j in enumerate(self.jobs)}
        self.pending, self.running, self.done = set(self._by_id), set[str](), set[str]()
        self.failed, self.blocked = set[str](), set[str]()
        self.not_before: dict[str, float] = {}

    def ready(self, now: float = 0.0) -> list[str]:
        ready = [t for t in self.pending
                 if all(d in self.done for d in self._by_id[t].needs) and self.not_before.get(t, 0.0) <= now]
        return sorted(ready, key=lambda t: (-self.priority[t], self._order[t]))

    def next_to_start(self, now: float = 0.0) -> list[str]:
        free, chosen, used = self.max_jobs - len(self.running), [], dict[str, int]()
        for t in self.ready(now):
            if free <= 0:
                break
            profile = self._by_id[t].profile
            limit = self.profile_limits.get(profile)
            running = sum(1 for r in self.running if self._by_id[r].profile == profile)
            if limit is not None and running + used.get(profile, 0) >= limit:
                continue
            chosen.append(t)
            used[profile] = used.get(profile, 0) + 1
            free -= 1
        return chosen

    def next_wakeup(self) -> float | None:
        return min((self.not_before[t] for t in self.pending
                    if t in self.not_before and all(d in self.done for d in self._by_id[t].needs)), default=None)

    @property
    def settled(self) -> bool:
        return not self.running and not self.ready(float("inf"))

    def start(self, task: str) -> None:
        self.pending.remove(task)
        self.running.add(task)

    def mark_done(self, task: str) -> None:
        self.pending.discard(task)
        self.running.discard(task)
        self.done.add(task)

    def hold(self, task: str) -> None:
        self.running.discard(task)

    def retry(self, task: str, not_before: float) -> None:
        self.running.discard(task)
        self.pending.add(task)
        self.not_before[task] = not_before

    def fail(self, task: str) -> list[str]:
        self.running.discard(task)
        self.pending.discard(task)
        self.failed.add(task)
        newly, frontier = [], [task]
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
        left = sorted(self.pending, key=self._order.__getitem__)
        self.pending.clear()
        self.blocked.update(left)
        return left


def simulate(jobs: Sequence[Job], max_jobs: int) -> float:
    sched = Rescanning(jobs, max_jobs)
    weight = {j.id: j.weight for j in jobs}
    now, end, seq = 0.0, 0.0, 0
    events: list[tuple[float, int, str]] = []
    while True:
        for t in sched.next_to_start(now):
            sched.start(t)
            heapq.heappush(events, (now + weight[t], seq, t))
            end, seq = max(end, now + weight[t]), seq + 1
        if not events:
            return end
        now, _, finished = heapq.heappop(events)
        sched.mark_done(finished)
        while events and events[0][0] == now:
            sched.mark_done(heapq.heappop(events)[2])


def simulate_barriers(jobs: Sequence[Job], max_jobs: int) -> float:
    level = graph.levels({j.id: list(j.needs) for j in jobs})
    return sum(simulate([Job(j.id, (), j.weight) for j in jobs if level[j.id] == depth], max_jobs)
               for depth in sorted(set(level.values())))


@dataclass(frozen=True)
class Before:
    levels: list[list[str]]
    critical_path: list[str]
    makespans: dict[int, tuple[float, float]]  # agents -> (wall, with phase barriers)
    speedups: dict[int, float]
    recommended: int
    findings: list[tuple[str, str, tuple[str, ...]]]  # (kind, message, tasks) of file-overlap, contract-owner


def analyze_before(plan: Plan) -> Before:
    jobs = [Job(t.id, tuple(t.needs), t.seconds) for t in plan.tasks]
    needs = {j.id: list(j.needs) for j in jobs}
    weight = {j.id: j.weight for j in jobs}
    level = graph.levels(needs)
    by_level = [[t.id for t in plan.tasks if level[t.id] == d] for d in range(max(level.values()) + 1)]
    work = sum(weight.values())
    makespans = {m: (simulate(jobs, m), simulate_barriers(jobs, m))
                 for m in range(1, max(len(ids) for ids in by_level) + 1)}
    speedups = {m: work / wall if wall else 1.0 for m, (wall, _) in makespans.items()}
    recommended = min(m for m, s in speedups.items() if s >= KNEE * max(speedups.values()))
    return Before(by_level, graph.critical_path(needs, weight), makespans, speedups, recommended,
                  pairwise_findings(plan))


def pairwise_findings(plan: Plan) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every pair of tasks not ordered by `needs`, `patterns_overlap` on every pair of their files."""
    needs = {t.id: list(t.needs) for t in plan.tasks}
    ancestors: dict[str, set[str]] = {}
    for tid in graph.topological_order(needs):
        ancestors[tid] = set().union(*({d, *ancestors[d]} for d in needs[tid]))
    out = []
    for i, a in enumerate(plan.tasks):
        for b in plan.tasks[i + 1:]:
            if a.id in ancestors[b.id] or b.id in ancestors[a.id]:
                continue
            shared = sorted({fa for fa in a.files for fb in b.files if patterns_overlap(fa, fb)})
            if shared:
                out.append(("file-overlap", f"{a.id} and {b.id} can run at the same time but both declare "
                            f"{', '.join(shared)}", (a.id, b.id)))
    for c in plan.contracts:
        for t in plan.tasks:
            if t.id != c.owner and any(patterns_overlap(f, c.path) for f in t.files):
                out.append(("contract-owner", f"{t.id} declares {c.path}, a contract owned by {c.owner}",
                            (t.id, c.owner)))
    return out

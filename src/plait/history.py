"""Learned estimates: how long verified tasks really took, and estimates calibrated from it.

Each verified task's duration (its verified attempt, start to finish: agent, capture, verify and review) is
recorded in the repository's state database with its agent profile, its role, its size bucket and the plan's
estimate (`Store.add_duration`; numbers and names only). A later `plait run` schedules by, and `plait check`
shows, the plan's estimates times a factor learned from that history:

- a sample is the log of actual / estimate (clipped to 1/50 … 50: a hung attempt must not swamp the rest);
- for each (profile, role), the newest `WINDOW` samples give the median log ratio, shrunk toward 0 (a factor
  of 1) as if `PRIOR_SAMPLES` more samples said the plan was right: factor = exp(n · median / (n + k));
- within it, each size bucket (the estimate rounded to 15m, 30m, 1h, 2h or 4h in log scale) has its own
  median, shrunk the same way toward its (profile, role) factor;
- the factor is that median ratio times exp(s² / 2), s the spread of the (profile, role)'s log ratios around
  their buckets' medians (1.4826 × their median absolute deviation, shrunk toward 0 the same way): the mean
  of a lognormal. A plan's wall time adds durations up, so it is the mean duration that adds up, and under
  noise of σ = 1 the mean is 1.65 × the median: estimating medians would promise runs a third too short.

Why a median of logs: durations are multiplicative (a task twice as hard takes about twice as long, the
noise is lognormal), so ratios are compared in log space, and the median ignores the odd attempt that ran
into its timeout or waited out a rate limit. Why shrink: one or two samples say little under noise of σ
0.5–1 (a factor of 1.6–2.7 either way), so a new profile starts near the plan's own estimate and moves to
what it measures as samples arrive (1 sample moves it a quarter of the way, 3 half, 12 four fifths). Only
the relative sizes of estimates change the order the scheduler starts tasks in; absolute sizes change what
`plait check` predicts.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.plan.model import Plan, Task
    from plait.state import Store

PRIOR_SAMPLES = 3.0  # the weight of the prior (factor 1, or the (profile, role) factor), in samples
WINDOW = 200  # the newest samples per (profile, role): agents and models change, old runs stop counting
MAX_RATIO = 50.0  # a sample's actual / estimate, and a factor, are clipped to 1/MAX_RATIO … MAX_RATIO
MAX_SPREAD = 1.5  # s above this (a factor of 4.5 either way) is taken as this: the mean of wilder noise says little
MAD_TO_SIGMA = 1.4826  # the median absolute deviation of a normal distribution is σ / 1.4826
BUCKETS = ((15 * 60.0, "15m"), (30 * 60.0, "30m"), (3600.0, "1h"), (7200.0, "2h"), (14400.0, "4h"))

Listener = Callable[[str, str | None, Mapping[str, Any]], None]


@dataclass(frozen=True)
class Sample:
    """One verified task: what the plan estimated and how long it took, in seconds."""

    profile: str
    role: str
    estimate: float
    seconds: float


def bucket(estimate: float) -> str:
    """The size bucket of an estimate: the nearest of 15m, 30m, 1h, 2h, 4h in log scale."""
    if estimate <= 0:
        return BUCKETS[0][1]
    return min(BUCKETS, key=lambda b: abs(math.log(estimate) - math.log(b[0])))[1]


@dataclass(frozen=True)
class Factor:
    """What a task's estimate is multiplied by, and how many samples of its (profile, role) and of its size
    bucket there are behind it."""

    value: float
    samples: int
    bucket_samples: int


@dataclass(frozen=True)
class Calibration:
    """The factors learned from a history (see the module's docstring); log factors with their sample counts."""

    groups: Mapping[tuple[str, str], tuple[float, int]]  # (profile, role) -> (log median ratio, samples)
    cells: Mapping[tuple[str, str, str], tuple[float, int]]  # (profile, role, bucket) -> the same
    samples: int
    spread: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (profile, role) -> s² / 2, shrunk

    def factor(self, profile: str, role: str, estimate: float) -> Factor:
        group, n = self.groups.get((profile, role), (0.0, 0))
        cell, m = self.cells.get((profile, role, bucket(estimate)), (group, 0))
        limit = math.log(MAX_RATIO)
        return Factor(math.exp(min(max(cell + self.spread.get((profile, role), 0.0), -limit), limit)), n, m)


def _log_ratio(s: Sample) -> float | None:
    if not (s.estimate > 0 and s.seconds >= 0 and math.isfinite(s.estimate) and math.isfinite(s.seconds)):
        return None
    ratio = min(max(s.seconds / s.estimate, 1 / MAX_RATIO), MAX_RATIO)
    return math.log(ratio)


def _shrunk(values: list[float], prior: float, k: float) -> float:
    return (len(values) * statistics.median(values) + k * prior) / (len(values) + k)


def _half_variance(by_bucket: Mapping[str, list[float]], k: float) -> float:
    """s² / 2 (see the module's docstring), from the buckets with two samples or more, shrunk toward 0."""
    deviations = [abs(r - statistics.median(rs)) for rs in by_bucket.values() if len(rs) > 1 for r in rs]
    if not deviations:
        return 0.0
    s = min(MAD_TO_SIGMA * statistics.median(deviations), MAX_SPREAD)
    return len(deviations) / (len(deviations) + k) * s * s / 2


def calibrate(samples: Iterable[Sample], prior_samples: float = PRIOR_SAMPLES, window: int = WINDOW) -> Calibration:
    """The factors from `samples`, oldest first (only the newest `window` of each (profile, role) count)."""
    by_group: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for s in samples:
        r = _log_ratio(s)
        if r is not None:
            by_group.setdefault((s.profile, s.role), []).append((bucket(s.estimate), r))
    groups: dict[tuple[str, str], tuple[float, int]] = {}
    cells: dict[tuple[str, str, str], tuple[float, int]] = {}
    spread: dict[tuple[str, str], float] = {}
    total = 0
    for key, found in by_group.items():
        recent = found[-window:]
        total += len(recent)
        group = _shrunk([r for _, r in recent], 0.0, prior_samples)
        groups[key] = (group, len(recent))
        by_bucket: dict[str, list[float]] = {}
        for b, r in recent:
            by_bucket.setdefault(b, []).append(r)
        for b, rs in by_bucket.items():
            cells[(*key, b)] = (_shrunk(rs, group, prior_samples), len(rs))
        spread[key] = _half_variance(by_bucket, prior_samples)
    return Calibration(groups, cells, total, spread)


NO_HISTORY = Calibration({}, {}, 0)


# -- a plan's calibrated estimates ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskEstimate:
    plan_seconds: float  # the plan's estimate (its `estimate`, else its size)
    seconds: float  # calibrated
    factor: float
    samples: int  # of its (profile, role)


@dataclass(frozen=True)
class Estimates:
    """A plan with its estimates calibrated (`plan`), what changed for each task, and the history's size."""

    plan: Plan
    tasks: Mapping[str, TaskEstimate]
    samples: int

    @property
    def used(self) -> bool:
        return any(t.samples for t in self.tasks.values())

    def summary(self) -> dict[str, Any]:
        """For `plait check --json` and the run's `run.estimates` event."""
        return {"used": self.used, "samples": self.samples,
                "tasks": {tid: {"plan_seconds": e.plan_seconds, "seconds": round(e.seconds, 1),
                                "factor": round(e.factor, 3), "samples": e.samples} for tid, e in self.tasks.items()}}


def role_of(task: Task) -> str:
    return task.role or ""


def estimates(plan: Plan, profiles: Collection[str], calibration: Calibration) -> Estimates:
    """The plan with each task's estimate times its factor (unchanged without history)."""
    found: dict[str, TaskEstimate] = {}
    tasks = []
    for t in plan.tasks:
        f = calibration.factor(plan.agent_for(t, profiles), role_of(t), t.seconds)
        found[t.id] = TaskEstimate(t.seconds, t.seconds * f.value, f.value, f.samples)
        tasks.append(t.model_copy(update={"estimate": t.seconds * f.value}) if f.samples else t)
    return Estimates(plan.model_copy(update={"tasks": tasks}), found, calibration.samples)


# -- the repository's history ----------------------------------------------------------------------------------
def samples(store: Store) -> list[Sample]:
    return [Sample(r["profile"] or "", r["role"] or "", float(r["estimate_seconds"] or 0.0), float(r["seconds"]))
            for r in store.durations() if r["seconds"] is not None]


def load(store: Store) -> Calibration:
    """The calibration from every duration recorded in this repository."""
    return calibrate(samples(store))


def record(store: Store, run_id: str, plan: Plan, profiles: Collection[str], task: Task) -> None:
    """Record a task that was just verified: its verified attempt's duration (nothing when none is found)."""
    attempt = store.verified_attempt(run_id, task.id)
    if not attempt or attempt["started_at"] is None or attempt["finished_at"] is None:
        return
    store.add_duration({"run_id": run_id, "task_id": task.id, "profile": plan.agent_for(task, profiles),
                        "role": role_of(task), "size": task.size.value, "estimate_seconds": task.seconds,
                        "seconds": max(0.0, attempt["finished_at"] - attempt["started_at"]),
                        "finished_at": attempt["finished_at"]})


def recorder(store: Store, run_id: str, plan: Plan, profiles: Collection[str], listener: Listener | None) -> Listener:
    """A run's listener that records each task as it is done, then passes every event on."""
    from plait.state import EventKind

    tasks = {t.id: t for t in plan.tasks}  # Plan.task scans the list: once per finished task is too slow at scale

    def listen(kind: str, task_id: str | None, data: Mapping[str, Any]) -> None:
        if kind == EventKind.TASK_DONE and task_id is not None:
            record(store, run_id, plan, profiles, tasks[task_id])
        if listener is not None:
            listener(kind, task_id, data)
    return listen

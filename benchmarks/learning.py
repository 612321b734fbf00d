"""Learned estimates on simulated noisy workloads: how much of the gap to the lower bound they close.

Run: .venv/bin/python -m benchmarks.learning [--projects 60] [--seed 1]

A "project" is a repository whose agents are systematically off the plan: each (profile, role, size) has a
factor drawn once, lognormal(0, --systematic), that the planner never sees. Its plans are random DAGs (the
STG 'sameprob' structure of benchmarks/scheduling.py) whose tasks get a profile (2), a role (3) and a size
(S 1h, M 2h, L 4h: the plan's estimate); a task really takes estimate x its cell's factor x lognormal(0,
sigma) noise, drawn anew each run. The project runs plan after plan; before each, plait.history.calibrate
(the code `plait run` uses) learns from every earlier run's recorded durations, and the run is the live
Scheduler's discrete-event simulation (plait.schedule.simulate) scheduling by the learned estimates, timed by
the actual durations. Each checkpoint (0, 1, 2, 5, 10 earlier runs) is measured on the same held-out plans
with the same actual durations, so only the estimates differ:

- makespan / lower bound, where the lower bound is max(critical path, work / agents) of the actual durations;
  "known" schedules by the estimates times the true systematic factors (the most learning can know: the
  noise of a run is unknowable before it runs), "exact" by the actual durations themselves;
- gap closed = (ratio before learning - ratio after 10 runs) / (ratio before - 1), and the share of what
  knowing the factors closes;
- forecast error: |log(predicted / actual makespan)|, the prediction being `plait check`'s (the scheduler's
  simulation with the estimates as durations).

The pure-noise rows (--systematic 0) are the honest control: random noise cannot be learned.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from dataclasses import dataclass

from benchmarks.scheduling import random_dag
from plait import graph
from plait.history import Calibration, Sample, calibrate
from plait.schedule import Job, lower_bound, simulate

PROFILES = ("claude", "codex")
ROLES = ("software-engineer", "sdet", "docs")
SIZES = {"S": 3600.0, "M": 7200.0, "L": 14400.0}
CHECKPOINTS = (0, 1, 2, 5, 10)
TEST_PLANS = 4  # held-out plans per project, each measured at every checkpoint
MIN_GAP = 0.002  # a gap to share out


@dataclass(frozen=True)
class Task:
    id: str
    needs: tuple[str, ...]
    profile: str
    role: str
    estimate: float


@dataclass(frozen=True)
class Project:
    factors: dict[tuple[str, str, str], float]  # (profile, role, size) -> the systematic factor
    sigma: float

    def factor(self, t: Task) -> float:
        return self.factors[(t.profile, t.role, next(s for s, sec in SIZES.items() if sec == t.estimate))]

    def actual(self, rng: random.Random, t: Task) -> float:
        return t.estimate * self.factor(t) * rng.lognormvariate(0, self.sigma)


def project(rng: random.Random, systematic: float, sigma: float) -> Project:
    cells = [(p, r, s) for p in PROFILES for r in ROLES for s in SIZES]
    return Project({c: rng.lognormvariate(0, systematic) if systematic else 1.0 for c in cells}, sigma)


def plan(rng: random.Random, n: int) -> list[Task]:
    structure = random_dag(rng, n, 0.15 if n <= 20 else 0.08)
    return [Task(j.id, j.needs, rng.choice(PROFILES), rng.choice(ROLES), SIZES[rng.choice(list(SIZES))])
            for j in structure]


def jobs(tasks: list[Task], weight: dict[str, float]) -> list[Job]:
    return [Job(t.id, t.needs, weight[t.id], t.profile) for t in tasks]


def learned(tasks: list[Task], c: Calibration) -> dict[str, float]:
    """Each task's estimate times its learned factor (what plait.history.estimates gives the engine)."""
    return {t.id: t.estimate * c.factor(t.profile, t.role, t.estimate).value for t in tasks}


def ratio(tasks: list[Task], weight: dict[str, float], actual: dict[str, float], m: int) -> float:
    needs = {t.id: list(t.needs) for t in tasks}
    cp = sum(actual[t] for t in graph.critical_path(needs, actual))
    return simulate(jobs(tasks, weight), m, actual).makespan / lower_bound(actual.values(), cp, m)


def forecast_error(tasks: list[Task], weight: dict[str, float], actual: dict[str, float], m: int) -> float:
    predicted = simulate(jobs(tasks, weight), m).makespan
    return abs(math.log(predicted / simulate(jobs(tasks, weight), m, actual).makespan))


@dataclass
class Figures:
    ratios: dict[int, list[float]]  # checkpoint -> makespan / LB
    exact: list[float]
    known: list[float]
    forecast: dict[int, list[float]]


def measure(seed: int, projects: int, n: int, m: int, systematic: float, sigma: float) -> Figures:
    rng = random.Random(seed)
    out = Figures({h: [] for h in CHECKPOINTS}, [], [], {h: [] for h in CHECKPOINTS})
    for _ in range(projects):
        proj = project(rng, systematic, sigma)
        held_out = [plan(rng, n) for _ in range(TEST_PLANS)]
        tests = [(tasks, {t.id: proj.actual(rng, t) for t in tasks}) for tasks in held_out]
        history: list[Sample] = []
        calibrations = {0: calibrate([])}
        for run in range(1, max(CHECKPOINTS) + 1):  # each earlier run: a new plan, its verified tasks recorded
            history += [Sample(t.profile, t.role, t.estimate, proj.actual(rng, t)) for t in plan(rng, n)]
            if run in CHECKPOINTS:
                calibrations[run] = calibrate(history)
        for tasks, actual in tests:
            out.exact.append(ratio(tasks, actual, actual, m))
            out.known.append(ratio(tasks, {t.id: t.estimate * proj.factor(t) for t in tasks}, actual, m))
            for h, c in calibrations.items():
                weight = learned(tasks, c)
                out.ratios[h].append(ratio(tasks, weight, actual, m))
                out.forecast[h].append(forecast_error(tasks, weight, actual, m))
    return out


def share(closed: float, gap: float) -> str:
    """A share of a gap, or "-" when the gap is under 0.2 % (a share of nothing is noise)."""
    return f"{100 * closed / gap:.0f}%" if gap >= MIN_GAP else "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--projects", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    runs = " ".join(f"{h:>6}" for h in CHECKPOINTS)
    print(f"mean makespan / lower bound after N earlier runs ({args.projects} projects x {TEST_PLANS} plans each; "
          f"seed {args.seed})")
    print(f"{'system.':>7} {'sigma':>5} {'tasks':>5} {'agents':>6} | {runs} {'known':>6} {'exact':>6} | "
          f"{'gap closed':>10} {'of known':>8} | {'forecast err, 0 -> 10 runs (median)':>35}")
    for systematic in (0.7, 0.0):
        for sigma in (0.5, 1.0):
            for n in (20, 50):
                for m in (4, 8):
                    f = measure(args.seed, args.projects, n, m, systematic, sigma)
                    mean = {h: statistics.fmean(v) for h, v in f.ratios.items()}
                    exact, known = statistics.fmean(f.exact), statistics.fmean(f.known)
                    last = max(CHECKPOINTS)
                    closed = share(mean[0] - mean[last], mean[0] - 1)
                    of_known = share(mean[0] - mean[last], mean[0] - known)
                    err = f"{statistics.median(f.forecast[0]):.3f} -> {statistics.median(f.forecast[last]):.3f}"
                    print(f"{systematic:>7} {sigma:>5} {n:>5} {m:>6} | "
                          + " ".join(f"{mean[h]:>6.3f}" for h in CHECKPOINTS)
                          + f" {known:>6.3f} {exact:>6.3f} | {closed:>10} {of_known:>8} | {err:>35}")


if __name__ == "__main__":
    main()

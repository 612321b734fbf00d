"""Dependency-driven (critical-path first) list scheduling vs phase barriers, on random DAGs.

Run: .venv/bin/python -m benchmarks.scheduling [--graphs 300] [--seed 1]
Prints, per (tasks, agents), the median and p90 of makespan / lower bound for plait's scheduler and for
level-by-level phase barriers, and the median barrier / plait ratio. Pure computation (the same
`plait.schedule` code the engine runs), so the numbers are reproducible exactly for a seed.
"""

from __future__ import annotations

import argparse
import random
import statistics

from plait import graph
from plait.schedule import Job, lower_bound, simulate, simulate_barriers


def random_dag(rng: random.Random, n: int, edge_p: float) -> list[Job]:
    """STG 'sameprob'-style: each earlier task is a dependency with probability edge_p; lognormal sizes."""
    jobs = []
    for i in range(n):
        needs = tuple(f"t{j}" for j in range(i) if rng.random() < edge_p)
        jobs.append(Job(f"t{i}", needs, round(rng.lognormvariate(0, 1) * 60, 1)))
    return jobs


def p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--graphs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"{'tasks':>5} {'agents':>6} | {'plait/LB med':>12} {'p90':>6} | {'barrier/LB med':>14} {'p90':>6} | "
          f"{'barrier/plait med':>17} {'max':>6}")
    for n in (10, 20, 50):
        dags = [random_dag(rng, n, 0.15 if n <= 20 else 0.08) for _ in range(args.graphs)]
        for m in (2, 4, 8):
            ours, barrier, ratio = [], [], []
            for jobs in dags:
                needs = {j.id: list(j.needs) for j in jobs}
                weight = {j.id: j.weight for j in jobs}
                cp = sum(weight[t] for t in graph.critical_path(needs, weight))
                lb = lower_bound(weight.values(), cp, m)
                a = simulate(jobs, m).makespan
                b = simulate_barriers(jobs, m)
                ours.append(a / lb)
                barrier.append(b / lb)
                ratio.append(b / a)
            print(f"{n:>5} {m:>6} | {statistics.median(ours):>12.3f} {p90(ours):>6.3f} | "
                  f"{statistics.median(barrier):>14.3f} {p90(barrier):>6.3f} | "
                  f"{statistics.median(ratio):>17.3f} {max(ratio):>6.2f}")


if __name__ == "__main__":
    main()

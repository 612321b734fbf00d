"""Per-task overhead of the Ray executor vs the local one, and what it means for a large cluster.

Run: .venv/bin/python -m benchmarks.ray_overhead [--tasks 16] [--jobs 4] [--repeat 3]

Starts a Ray cluster on this machine (`ray.cluster_utils.Cluster`: a head that runs no attempts and two
worker nodes), then runs the same plan of no-op tasks (the `script` agent writes one file; no verify) with
`plait run --executor local` and `--executor ray` alternately, each run in a fresh repository. Per task:
the time from `task.started` to `task.attempt_done` in the run's events; per run: wall clock, and CPU of
the plait process with its children plus (for Ray) the cluster's processes. The Ray executor's per-task
overhead is the difference of the medians.

Then the scheduler's own simulation (plait.schedule.simulate, what `plait check` and the engine use) of
random 10,000-task plans (by default) on 100 and 1,000 slots, with and without that overhead added to every task, and
the driver's CPU per task against the rate at which such a cluster finishes tasks.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from plait.schedule import Job, simulate

MB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")
PLAIT_TOML = "[executor.resources]\ndefault = { agent_slot = 1 }\n"


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def make_repo(folder: Path, tasks: int) -> tuple[Path, Path]:
    repo = folder / "repo"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("# bench\n")
    (repo / "plait.toml").write_text(PLAIT_TOML)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    plan = folder / "plan.yaml"
    body = [{"id": f"t{i}", "title": f"t{i}", "prompt": "p", "files": [f"t{i}.txt"],
             "script": {"write": {f"t{i}.txt": f"{i}\n"}}} for i in range(tasks)]
    plan.write_text(yaml.safe_dump({"plait": 1, "name": "noop", "tasks": body}))
    return repo, plan


def descendants_cpu(root: int) -> float:
    """CPU seconds (own and waited-for children's) of every process below `root` (the Ray cluster's)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        stats[pid] = sum(int(f) for f in fields[11:15]) / TICK
    total, todo = 0.0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def one_run(executor: str, address: str, tasks: int, jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        repo, plan = make_repo(Path(tmp), tasks)
        extra = ["--address", address] if executor == "ray" else []
        cluster_before = descendants_cpu(os.getpid())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "plait", "run", str(plan), "--executor", executor,
                               "--jobs", str(jobs), *extra], cwd=repo, capture_output=True, text=True,
                              env={**os.environ, "PLAIT_WORKSPACES": str(Path(tmp) / "ws")})
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cluster_cpu = descendants_cpu(os.getpid()) - cluster_before
        if done.returncode != 0:
            raise SystemExit(f"plait run --executor {executor} failed:\n{done.stdout}\n{done.stderr}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        db = sqlite3.connect(repo / ".git" / "plait" / "state.db")
        rows = list(db.execute("SELECT task_id, kind, ts FROM events WHERE kind IN "
                               "('run.started', 'task.started', 'task.attempt_done') ORDER BY seq"))
        db.close()
        began = next(ts for _, kind, ts in rows if kind == "run.started")
        first_done = next(ts for _, kind, ts in rows if kind == "task.attempt_done")
        starts: dict[str, float] = {}
        durations, warm = [], []
        for task_id, kind, ts in rows:
            if kind == "task.started":
                starts[task_id] = ts
            elif kind == "task.attempt_done":
                durations.append(ts - starts[task_id])
                if starts[task_id] >= first_done:  # started once the executor was warm
                    warm.append(ts - starts[task_id])
        return {"wall": wall, "cpu": cpu, "cluster_cpu": max(cluster_cpu, 0.0), "task": statistics.median(durations),
                "warm": statistics.median(warm), "first": first_done - began}


def random_plan(rng: random.Random, n: int, minutes: float) -> list[Job]:
    """Wide plans: each task needs 0-2 tasks chosen at random among the earlier ones; lognormal durations
    (median `minutes`, sigma 0.8), the shape of agent work."""
    jobs = []
    for i in range(n):
        needs = tuple(sorted({f"t{rng.randrange(i)}" for _ in range(rng.randint(0, 2))})) if i else ()
        jobs.append(Job(f"t{i}", needs, round(rng.lognormvariate(0, 0.8) * minutes * 60, 1)))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=5.0, help="median agent task length, simulated")
    parser.add_argument("--plan-tasks", type=int, default=10000, help="tasks of the simulated plans")
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory() as nodes:
        os.environ["PLAIT_NODE_ROOT"] = nodes
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * MB})
        for _ in range(2):
            cluster.add_node(num_cpus=1, resources={"agent_slot": args.jobs}, object_store_memory=80 * MB)
        cluster.wait_for_nodes()
        try:
            results: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
            for _ in range(args.repeat):
                for executor in ("local", "ray"):
                    results[executor].append(one_run(executor, cluster.address, args.tasks, args.jobs))
        finally:
            cluster.shutdown()

    def med(executor: str, key: str) -> float:
        return statistics.median(r[key] for r in results[executor])

    print(f"{args.tasks} no-op tasks, --jobs {args.jobs}, {args.repeat} runs each, medians")
    print(f"{'executor':>8} | {'task':>7} | {'warm task':>9} | {'1st result':>10} | {'wall':>7} | "
          f"{'CPU plait+children':>18} | {'CPU cluster':>11}")
    for executor in ("local", "ray"):
        print(f"{executor:>8} | {med(executor, 'task'):>6.2f}s | {med(executor, 'warm'):>8.2f}s | "
              f"{med(executor, 'first'):>9.2f}s | {med(executor, 'wall'):>6.2f}s | "
              f"{med(executor, 'cpu'):>17.2f}s | {med(executor, 'cluster_cpu'):>10.2f}s")
    overhead = med("ray", "warm") - med("local", "warm")
    startup = med("ray", "first") - med("local", "first")
    driver_cpu = med("ray", "cpu") / args.tasks
    print(f"Ray per-task overhead (warm): {overhead:.2f}s; start-up (first result): +{startup:.1f}s; "
          f"driver CPU per task {driver_cpu * 1000:.0f} ms")

    rng = random.Random(1)
    plans = [random_plan(rng, args.plan_tasks, args.minutes) for _ in range(3)]
    print(f"\nsimulated: {args.plan_tasks:,}-task plans, median task {args.minutes:g} min, 3 plans, medians; "
          f"+overhead = {overhead:.2f}s per task and {startup:.1f}s once")
    print(f"{'slots':>5} | {'makespan':>9} | {'+overhead':>9} | {'slower':>6} | {'tasks/s':>7} | {'driver CPU':>10}")
    for slots in (100, 1000):
        base, more, rate = [], [], []
        for jobs in plans:
            plain = simulate(jobs, slots).makespan
            loaded = simulate(jobs, slots, {j.id: j.weight + overhead for j in jobs}).makespan + startup
            base.append(plain)
            more.append(loaded)
            rate.append(len(jobs) / loaded)
        busy = statistics.median(rate) * driver_cpu
        print(f"{slots:>5} | {statistics.median(base) / 60:>6.1f}min | {statistics.median(more) / 60:>6.1f}min | "
              f"{(statistics.median(more) / statistics.median(base) - 1) * 100:>5.2f}% | "
              f"{statistics.median(rate):>7.2f} | {busy * 100:>9.1f}%")


if __name__ == "__main__":
    main()

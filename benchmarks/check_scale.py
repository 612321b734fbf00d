"""`plait check --json` on big plans, and the live Scheduler's cost per event, before and after issue 13.

Plans (YAML files, `estimate` 20–240 min at random): `wide` (independent tasks), `chains` (8 chains),
`random` (each task needs 0–3 earlier ones) and `overlap` (the random DAG, with tasks sharing directories,
globs, README.md and files in the same folders), at 100, 1,000, 2,000 and 5,000 tasks.

Each version runs in a fresh interpreter (`plait` from the working tree, or from `git archive REV` for the
versions before), which times `plait.commands.check.check(..., as_json=True)`, what `plait check --json PLAN`
runs, into a string: loading, validating, analyzing and the JSON output, without the interpreter's start
and imports. Run outside a repository, so no agent profiles are checked. Medians of `--repeat` runs; a run
over `--timeout` seconds is stopped, reported as "did not finish", and that version skips the shape's
bigger plans.

The Scheduler rows drive `plait.schedule.Scheduler` as the engine does (8 agents: `next_to_start`, `start`
and `mark_done` at each task's end, in simulated time) and give the mean cost of one event; they run the
last version before and the one after (3c1ccef^'s Scheduler is 8e9166c's without `hold`). The last column
gives each version's recommended agents / findings ("-": not run).

Run: .venv/bin/python -m benchmarks.check_scale [--repeat 3] [--timeout 60] [--sizes 100,1000,2000,5000]
     [--before 3c1ccef^,8e9166c]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

SHAPES = ("wide", "chains", "random", "overlap")

_CHILD = """
import io, json, sys, time
from pathlib import Path
mode, path = sys.argv[1], Path(sys.argv[2])
if mode == "check":
    from rich.console import Console
    from plait.commands.check import check
    out = io.StringIO()
    wall, cpu = time.perf_counter(), time.process_time()
    check([path], None, True, False, Console(file=out, width=100))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    doc = json.loads(out.getvalue())
    print(json.dumps({"wall": wall, "cpu": cpu, "agents": doc.get("recommended_agents"),
                      "findings": len(doc.get("findings", []))}))
else:
    import heapq
    from plait.plan.load import load_plan
    from plait.schedule import Job, Scheduler
    plan = load_plan(path).plan
    jobs = [Job(t.id, tuple(t.needs), t.seconds) for t in plan.tasks]
    sched, weight = Scheduler(jobs, 8), {j.id: j.weight for j in jobs}
    ends, now, events = [], 0.0, 0
    wall, cpu = time.perf_counter(), time.process_time()
    while True:
        for t in sched.next_to_start(now):
            sched.start(t)
            heapq.heappush(ends, (now + weight[t], t))
        if not ends:
            break
        now, t = heapq.heappop(ends)
        sched.mark_done(t)
        events += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"wall": wall / events, "cpu": cpu / events, "agents": 8, "findings": 0}))
"""


def plan_yaml(shape: str, n: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    lines = ["plait: 1", f"name: {shape}-{n}", "defaults: {verify: 'true'}", "tasks:"]
    for i in range(n):
        if shape == "wide":
            needs = []
        elif shape == "chains":
            needs = [f"t{i - 8}"] if i >= 8 else []
        else:
            needs = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) if i else []
        files = [f"src/t{i}/main.py", f"tests/test_{i}.py"]
        if shape == "overlap":
            folder = f"src/m{i % 50}"
            files = [f"{folder}/f{i}.py", f"{folder}/**" if i % 7 == 0 else f"{folder}/g{i % 13}.py",
                     "README.md" if i % 25 == 0 else f"docs/{i}.md"]
        lines += [f"  - id: t{i}", f"    title: task {i}", "    prompt: do it", f"    needs: [{', '.join(needs)}]",
                  f"    files: [{', '.join(files)}]", f"    estimate: {rng.randint(20, 240)}m"]
    return "\n".join(lines) + "\n"


def source_tree(rev: str, into: Path) -> Path:
    """`src/` of the repository at `rev` (a version before this one), unpacked into `into`."""
    tar = subprocess.run(["git", "archive", "--format=tar", rev, "src/plait"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"


def run_once(mode: str, plan: Path, src: Path, timeout: float) -> dict[str, Any] | None:
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, mode, str(plan)], capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=plan.parent, env={"PYTHONPATH": str(src)})
    except subprocess.TimeoutExpired:
        return None
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def seconds(value: float) -> str:
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--sizes", default="100,1000,2000,5000")
    parser.add_argument("--before", default="3c1ccef^,8e9166c", help="git revisions to compare with")
    parser.add_argument("--scheduler-sizes", default="1000,5000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    revs = [r for r in args.before.split(",") if r]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {rev: source_tree(rev, Path(tmp, f"rev{i}")) for i, rev in enumerate(revs)}
        trees["after"] = Path(__file__).resolve().parents[1] / "src"
        header = " | ".join(f"{v} wall | {v} CPU" for v in trees)
        print(f"| what | tasks | {header} | agents / findings |")
        print("|---|---|" + "---|---|" * len(trees) + "---|")
        jobs = [("check", shape, n) for shape in SHAPES for n in sizes]
        jobs += [("scheduler", shape, int(n)) for shape in ("wide", "random") for n in args.scheduler_sizes.split(",")]
        gave_up: set[tuple[str, str, str]] = set()
        for mode, shape, n in jobs:
            plan = Path(tmp, f"{shape}-{n}", "plan.yaml")
            plan.parent.mkdir(exist_ok=True)
            plan.write_text(plan_yaml(shape, n))
            cells, seen = [], []
            for name, src in trees.items():
                if (mode, shape, name) in gave_up or (mode == "scheduler" and name in revs[:-1]):
                    cells.append("not run | -")
                    seen.append("-")
                    continue
                runs = []
                for _ in range(args.repeat):
                    result = run_once(mode, plan, src, args.timeout)
                    if result is None:
                        break
                    runs.append(result)
                if len(runs) < args.repeat:
                    gave_up.add((mode, shape, name))
                    cells.append(f"did not finish in {args.timeout:g} s | -")
                    seen.append("-")
                    continue
                wall, cpu = (statistics.median(r[k] for r in runs) for k in ("wall", "cpu"))
                cells.append(f"{seconds(wall)} | {seconds(cpu)}")
                seen.append(f"{runs[0]['agents']}/{runs[0]['findings']}")
            what = f"check --json, {shape}" if mode == "check" else f"Scheduler per event, {shape}"
            extra = " / ".join(seen) if mode == "check" else "-"
            print(f"| {what} | {n:,} | {' | '.join(cells)} | {extra} |", flush=True)


if __name__ == "__main__":
    main()

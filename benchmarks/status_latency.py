"""`plait status --json` while a 1,000-task run is live, and after: this tree against an earlier revision.

A real run: a small repository, a plan of `--tasks` independent tasks of the `script` agent (each writes
one file; verify `true`), started with `plait run --detach --jobs 8`. With `--delay S` each task's agent
first waits S seconds (the machine idle while the run is live, as with real agents, which mostly wait for
their model): measured once `--jobs` tasks are running. Without, once `--warmup` tasks are done,
`plait status --json` runs `--repeat` times from another process (stdout a pipe, as a script reads it),
alternating this tree's code ("after") with the code of `--before` (a revision's `src/`, exported with
`git archive` to a temporary folder: "before"). Each code runs its own run in its own repository (their
state databases differ: the plan moved out of the run's row), both runs live at once. Then the runs are
cancelled (or, with `--finish`, waited for) and both are measured again. This tree's code twice: as it
answers a poll while nothing changed (the document it printed last, kept ready) and as it answers one after a
change (that document removed first: built from the database). Wall time per call, and CPU
(user + system of the child, from `getrusage(RUSAGE_CHILDREN)`); p50 and p99.

Imports: wall and CPU of `python -m plait --help` and of `plait status --json` on the finished run, and
how many modules each imported and whether pydantic or rich was among them (`sys.modules` at exit).

Run: .venv/bin/python -m benchmarks.status_latency [--tasks 1000] [--repeat 30] [--before HEAD] [--delay 3600]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ENV, ROOT, export, git, make_repo

# `plait ARGS` as the installed `plait` command runs it (pip's console script: `import re, sys`, then the entry
# point), saying at exit how many modules it imported, and which of the heavy packages (on stderr)
PROBE = """import re, sys
from plait.entry import main
sys.argv = ['plait', *sys.argv[1:]]
try:
    main()
finally:
    print(len(sys.modules), 'modules', *sorted(m for m in ('pydantic', 'rich') if m in sys.modules), file=sys.stderr)
"""


def plait(repo: Path, src: Path, *args: str) -> tuple[float, float, str, str]:
    """(wall, CPU of the child, stdout, stderr) of one `plait ARGS` with the package from `src`."""
    env = {**ENV, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"plait {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stdout, done.stderr.strip()


def status_doc(repo: Path, src: Path) -> dict[str, object]:
    doc = json.loads(plait(repo, src, "status", "--json")[2])
    assert isinstance(doc, dict)
    return doc


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, round(0.99 * (len(values) - 1)))]


def measure(repos: dict[str, Path], sources: dict[str, Path], repeat: int, when: str) -> None:
    """`repeat` calls of each code, alternating; this tree's twice: answered with the document kept ready from
    its last call ("ready"), and with that document removed before each call, so it is built ("built")."""
    ways = {(name, way): (repos[name], src) for name, src in sources.items()
            for way in (("ready", "built") if name == "after" else ("",))}
    times: dict[tuple[str, str], tuple[list[float], list[float]]] = {way: ([], []) for way in ways}
    size = 0
    for repo, src in ways.values():  # unmeasured: the first call writes the bytecode
        plait(repo, src, "status", "--json")
    for _ in range(repeat):
        for (name, way), (repo, src) in ways.items():
            if way == "built":
                (repo / ".git" / "plait" / "status-ready.json").unlink(missing_ok=True)
            wall, cpu, out, _ = plait(repo, src, "status", "--json")
            times[name, way][0].append(wall)
            times[name, way][1].append(cpu)
            size = max(size, len(out))
    for (name, way), (walls, cpus) in times.items():
        print(f"| {when} | {name}{f' ({way})' if way else ''} | {1000 * statistics.median(walls):.0f} ms "
              f"| {1000 * p99(walls):.0f} ms | {1000 * statistics.median(cpus):.0f} ms | {1000 * p99(cpus):.0f} ms "
              f"| {size // 1000} KB |", flush=True)


def wait_for(repo: Path, src: Path, until: str, done: int, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = status_doc(repo, src)
        counts = doc["counts"]
        assert isinstance(counts, dict)
        if (until in ("done", "running") and counts[until] >= done) or (
                until == "over" and doc["status"] != "running" and doc["status"] != "cancelling"):
            return doc
        time.sleep(1.0)
    raise TimeoutError(f"the run did not reach {until} {done} in {timeout:.0f} s")


def imports(repos: dict[str, Path], sources: dict[str, Path], repeat: int) -> None:
    for name, src in sources.items():
        plait(repos[name], src, "--help")
    for args in (("--help",), ("status", "--json")):
        for name, src in sources.items():
            runs = [plait(repos[name], src, *args) for _ in range(repeat)]
            imported = runs[0][3].splitlines()[-1]
            print(f"| plait {' '.join(args)} | {name} | {1000 * statistics.median(r[0] for r in runs):.0f} ms "
                  f"| {1000 * statistics.median(r[1] for r in runs):.0f} ms | {imported} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=300, help="tasks done before the live measurement")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each task's agent waits first")
    parser.add_argument("--before", default="HEAD", help="the revision to compare with ('' for none)")
    parser.add_argument("--finish", action="store_true", help="wait for the run to end instead of cancelling it")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plait-status-bench-") as tmp:
        sources = {"after": ROOT / "src"}
        if args.before:
            (Path(tmp) / "before").mkdir()
            sources["before"] = export(args.before, Path(tmp) / "before")
        repos = {name: start(Path(tmp), name, src, args) for name, src in sources.items()}
        docs = {name: wait_for(repos[name], src, "running" if args.delay else "done",
                               min(args.jobs if args.delay else args.warmup, args.tasks), args.timeout)
                for name, src in sources.items()}
        print("| when | code | wall p50 | wall p99 | CPU p50 | CPU p99 | output |\n|---|---|---|---|---|---|---|")
        measure(repos, sources, args.repeat, f"live ({docs['after']['phase']})")
        for name, src in sources.items():
            if not args.finish:
                with contextlib.suppress(RuntimeError):  # it may have ended already
                    plait(repos[name], src, "cancel")
        docs = {name: wait_for(repos[name], src, "over", 0, args.timeout) for name, src in sources.items()}
        counts = docs["after"]["counts"]
        assert isinstance(counts, dict)
        measure(repos, sources, args.repeat, f"after ({docs['after']['status']}, {counts['done']} done)")
        print("\n| command | code | wall p50 | CPU p50 | imported |\n|---|---|---|---|---|")
        imports(repos, sources, max(5, args.repeat // 3))


def start(tmp: Path, name: str, src: Path, args: argparse.Namespace) -> Path:
    """A repository for `name`'s code, its run started in the background."""
    repo = tmp / f"repo-{name}"
    plan = make_repo(repo, 0, args.tasks, "status-latency")
    if args.delay:
        plan.write_text(plan.read_text().replace("script: {write:", f"script: {{delay: {args.delay}s, write:"))
        git(repo, "commit", "-qam", "each task waits first")
    env = {**ENV, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-m", "plait", "run", str(plan), "--jobs", str(args.jobs), "--detach"],
                   cwd=repo, env=env, check=True, capture_output=True)
    return repo


if __name__ == "__main__":
    main()

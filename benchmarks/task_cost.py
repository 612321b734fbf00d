"""What plait itself costs per task as plans grow (issue 13, goals 3 and 4): a real `plait run` of near-no-op tasks.

A generated repository of `--files` files (~100 bytes each, nested folders, one commit) and a plan of `--tasks`
independent tasks of the `script` agent (each writes one new file; verify `true`; integration verify `true`),
run with `plait run --jobs 8` as a child process, once per task count, for each source tree: this tree ("after")
and `--before REV` (that revision's `src/`, exported with `git archive`: "before"), alternating. Each run is in a
fresh repository ("cold": no work tree kept from an earlier run); with `--warm`, a warm-up run of 8 other tasks
(`--jobs 8`, its own plan) comes first in the same repository, unmeasured, so the measured run starts with the work
trees it kept ("warm": what a user's second run of a repository gets). Per run:

- wall time, CPU (user + system of the run and every process it waited for, from `wait4`), CPU per task;
- peak RSS (the largest process of the run);
- the integration tail: from the last task's `task.done` to `run.finished`, and its share of the run;
- workspaces held: checkouts (attempt folders holding a `tree/`, and work trees kept for reuse) present at once,
  sampled every second, at most; times the size of one checkout = disk held; work trees kept after the run.

`--count-git N`: one more run of N tasks per source with a `git` on PATH that logs every invocation: git
processes per task, by subcommand.

`--launches N`: CPU per confined command, for each source: N times `true` through the sandbox launcher (what
every agent and verify command starts through), against N times `true` started directly.

`--script`: the same work as a hand-written git script, per task, one after another, for the CPU comparison (once
with a fresh checkout per task, once with one folder reset to the base per task, as plait now does):
check the base out into a folder of its own (`read-tree -u` with its own index), write the file, `add -A`,
`write-tree`, `commit-tree`, `update-ref`, run `true`, merge into a radar head and an integration head
(`merge-tree --write-tree` + `commit-tree` each), delete the folder: 9 git processes per task.

Run: .venv/bin/python -m benchmarks.task_cost [--tasks 100,250,500,1000] [--files 1000] [--before d6e1f9a]
     [--warm] [--count-git 100] [--script 100] [--launches 100]
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import ENV, ROOT, cpu, export, git, make_repo


def checkouts(workspaces: Path) -> int:
    """Attempt folders that hold a work tree now."""
    found = 0
    for run in (run for repo in _dirs(workspaces) for run in _dirs(repo)):
        if run.name == "_spare":  # work trees kept for the next workspaces, this run's or a later one's
            found += kept(run)
            continue
        for task in _dirs(run):
            found += sum(1 for a in _dirs(task) if (a / "tree").is_dir())
    return found


def kept(spares: Path) -> int:
    return sum(1 for s in _dirs(spares) if not s.name.startswith(".") and (s / "tree").is_dir())


def _dirs(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def tree_bytes(tree: Path) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_blocks * 512 for d, _, fs in os.walk(tree) if ".git" not in d
               for f in fs)


_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []


def scratch(prefix: str) -> str:
    """A temporary folder for one measured run, removed only when the benchmark ends: on a file system that
    avoids reusing an inode for minutes after it is freed (ext4 without a journal, as here), creating files right
    after a mass deletion costs several times more, and the next round would pay for this one's cleanup."""
    _SCRATCH.append(tempfile.TemporaryDirectory(prefix=prefix))
    return _SCRATCH[-1].name


WARM_UP = 8  # tasks of the warm-up run, with --jobs 8: it leaves the work trees of 8 jobs


def warm_up(repo: Path, env: dict[str, str]) -> None:
    """An unmeasured run of WARM_UP other tasks (its own plan, outside the repository) in `repo`."""
    lines = ["plait: 1", "name: warm-up", "defaults: {agent: script, verify: 'true'}", "integration: {verify: 'true'}",
             "tasks:"]
    for i in range(WARM_UP):
        lines += [f"  - id: w{i}", f"    title: Warm-up {i}", f"    prompt: write warm/f{i}.txt",
                  f"    files: [warm/f{i}.txt]", f"    script: {{write: {{warm/f{i}.txt: '{i}'}}}}"]
    plan = repo.parent / "warm-up.yaml"
    plan.write_text("\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, "-m", "plait", "run", str(plan), "--jobs", "8"], cwd=repo, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError(f"the warm-up run failed ({done.returncode}): {done.stderr.decode()[-800:]}")


def run_plait(src: Path, files: int, tasks: int, shim: Path | None = None, warm: bool = False,
              jobs: int = 8) -> dict[str, float]:
    tmp = scratch("plait-cost-")
    plan = make_repo(Path(tmp) / "repo", files, tasks, "task-cost")
    cache = Path(tmp) / "cache"
    env = {**ENV, "PYTHONPATH": str(src), "XDG_CACHE_HOME": str(cache)}
    if shim is not None:
        env["PATH"] = f"{shim}:{env['PATH']}"
    if warm:
        warm_up(plan.parent, env)
    spares = [s for repo in _dirs(cache / "plait" / "workspaces") for s in _dirs(repo) if s.name == "_spare"]
    kept_before = sum(kept(s) for s in spares)
    db = sqlite3.connect(plan.parent / ".git" / "plait" / "state.db") if warm else None
    earlier = {row[0] for row in db.execute("SELECT id FROM runs")} if db else set()
    if db:
        db.close()
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            peak[0] = max(peak[0], checkouts(cache / "plait" / "workspaces"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "plait", "run", str(plan), "--jobs", str(jobs)],
                             cwd=plan.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    db = sqlite3.connect(plan.parent / ".git" / "plait" / "state.db")
    (run_id,) = {row[0] for row in db.execute("SELECT id FROM runs")} - earlier
    ts = {kind: (lo, hi) for kind, lo, hi in
          db.execute("SELECT kind, min(ts), max(ts) FROM events WHERE run_id=? GROUP BY kind", (run_id,))}
    failed = db.execute("SELECT count(*) FROM events WHERE kind='task.failed' AND run_id=?",
                        (run_id,)).fetchone()[0]
    db.close()
    spares = [s for repo in _dirs(cache / "plait" / "workspaces") for s in _dirs(repo) if s.name == "_spare"]
    if child.returncode != 0 and not failed:
        raise RuntimeError(f"plait run failed ({child.returncode}): {err.decode()[-800:]}")
    run_start, run_end = ts["run.started"][0], ts["run.finished"][1]
    tail = run_end - ts["task.done"][1]
    # A run with failed tasks does not integrate: its tail is not the integration's (NaN).
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024,
            "tail": tail if not failed else float("nan"), "tail_share": tail / (run_end - run_start)
            if not failed else float("nan"), "held": peak[0], "tree_mb": tree_bytes(plan.parent) / 2**20,
            "failed": failed, "kept_before": kept_before, "kept_after": sum(kept(s) for s in spares)}


def git_shim(folder: Path, log: Path) -> Path:
    real = shutil.which("git")
    assert real
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "git"
    shim.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    return folder


def count_git(src: Path, files: int, tasks: int) -> collections.Counter[str]:
    with tempfile.TemporaryDirectory(prefix="plait-git-") as tmp:
        log = Path(tmp) / "git.log"
        log.touch()
        run_plait(src, files, tasks, git_shim(Path(tmp) / "bin", log))
        words = (next((w for w in line.split() if not w.startswith("-")), "?") for line in log.read_text().splitlines())
        return collections.Counter(words)


# Run with the source's plait on sys.path: CPU ms per confined `true`, then per direct `true`.
_LAUNCHES = """import os, resource, statistics, sys, tempfile
from plait import proc
from plait.sandbox import Confinement
try:
    from plait.sandbox import client
except ImportError:  # a tree from before the launch server
    client = None

def server_cpu():
    # The launch server is reaped only at exit: its CPU and its children's, read from /proc meanwhile.
    server = client and client._server
    if server is None:
        return 0.0
    with open(f"/proc/{server.process.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

def cpu():
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime + server_cpu()

n = int(sys.argv[1])
ways = {"server": True, "own": False, "direct": None}
found = {way: [] for way in ways}
with tempfile.TemporaryDirectory() as writable:
    for _ in range(3):
        for way, server in ways.items():
            if way == "server" and client is None:
                found[way].append(float("nan"))
                continue
            if client is not None:
                client.ENABLED = bool(server)
            how = None if server is None else Confinement((writable,))
            before = cpu()
            for _ in range(n):
                assert proc.run(["true"], confine=how).ok
            found[way].append(1000 * (cpu() - before) / n)
print(*(statistics.median(found[way]) for way in ways))
"""


def launches(src: Path, n: int) -> tuple[float, float, float]:
    """CPU ms per `true` started through the sandbox launcher forked by the launch server, started as a process
    of its own, and started directly (no sandbox); medians of 3 rounds of `n`, the three ways alternating."""
    out = subprocess.run([sys.executable, "-c", _LAUNCHES, str(n)], env={**ENV, "PYTHONPATH": str(src)},
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def script_round(files: int, tasks: int, recycle: bool) -> tuple[float, float]:
    """CPU per task of the hand-written script (see the module's docstring): of the processes it runs, and of its
    own interpreter; `recycle`: one folder for every task, reset to the base (`clean -ffdqx`, `read-tree --reset
    -u`) instead of a fresh checkout and a delete."""
    tmp = scratch("plait-script-")
    repo = Path(tmp) / "repo"
    make_repo(repo, files, 0)
    env = {**ENV, "GIT_DIR": str(repo / ".git")}
    base = git(repo, "rev-parse", "HEAD").strip()
    radar = integration = base
    before, own = cpu(), own_cpu()
    for i in range(tasks):
        ws = Path(tmp) / "ws" / ("t" if recycle else f"t{i}")
        (ws / "tree").mkdir(parents=True, exist_ok=True)
        wenv = {**env, "GIT_INDEX_FILE": str(ws / "index"), "GIT_WORK_TREE": str(ws / "tree")}
        if recycle and i:
            git(ws / "tree", "clean", "-ffdqx", env=wenv)
        git(ws / "tree", "read-tree", "--reset", "-u", base, env=wenv)
        (ws / "tree" / "out").mkdir()
        (ws / "tree" / "out" / f"f{i}.txt").write_text(str(i))
        git(ws / "tree", "add", "-A", env=wenv)
        tree = git(ws / "tree", "write-tree", env=wenv).strip()
        commit = git(repo, "commit-tree", tree, "-p", base, "-m", f"t{i}", env=env).strip()
        git(repo, "update-ref", f"refs/heads/t{i}", commit, "0" * 40, env=env)
        subprocess.run(["sh", "-c", "true"], cwd=ws / "tree", check=True)
        for head in ("radar", "integration"):
            ours = radar if head == "radar" else integration
            merged = git(repo, "merge-tree", "--write-tree", ours, commit, env=env).split()[0]
            new = git(repo, "commit-tree", merged, "-p", ours, "-p", commit, "-m", head, env=env).strip()
            radar, integration = (new, integration) if head == "radar" else (radar, new)
        if not recycle:
            shutil.rmtree(ws)
    return (cpu() - before) / tasks, (own_cpu() - own) / tasks


def own_cpu() -> float:
    """This process's own CPU: the script's interpreter (the git processes it runs are `cpu()`)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="100,250,500,1000")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--before", default="d6e1f9a", help="a revision, or '' for this tree only")
    parser.add_argument("--only", choices=("before", "after"), help="run one of the two source trees")
    parser.add_argument("--after", default=str(ROOT / "src"), help="the source tree measured as 'after'")
    parser.add_argument("--warm", action="store_true",
                        help="measure each run after a warm-up run in the same repository (as --starts warm)")
    parser.add_argument("--starts", default="cold", help="cold, warm or cold,warm: each run in a fresh repository, "
                        "and/or after a warm-up run in the same repository")
    parser.add_argument("--jobs", type=int, default=8, help="the measured runs' --jobs (the warm-up's is 8)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, each code, size and start alternating; "
                        "with --script the script is measured in each round; medians at the end")
    parser.add_argument("--count-git", type=int, default=0, metavar="TASKS")
    parser.add_argument("--script", type=int, default=0, metavar="TASKS", help="hand-written script's CPU per task")
    parser.add_argument("--launches", type=int, default=0, metavar="N", help="the sandbox launcher's CPU per command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plait-src-") as tmp:
        sources = {"after": Path(args.after)}
        if args.before:
            sources = {"before": export(args.before, Path(tmp)), **sources}
        if args.only:
            sources = {args.only: sources[args.only]}
        if args.script and args.repeat == 1:
            for recycle in (False, True):
                how = "one folder reset per task" if recycle else "a fresh checkout per task"
                spawned, own = script_round(args.files, args.script, recycle)
                print(f"hand-written script, {args.files} files, {how}: {1000 * spawned:.0f} ms CPU per task "
                      f"(+ {1000 * own:.0f} ms of its own interpreter)", flush=True)
        for name, src in sources.items():
            if args.launches:
                served, own_launcher, direct = launches(src, args.launches)
                print(f"{name}: `true` through the sandbox launcher forked by the launch server {served:.1f} ms CPU, "
                      f"a launcher of its own {own_launcher:.1f} ms, directly {direct:.1f} ms", flush=True)
            if args.count_git:
                counts = count_git(src, args.files, args.count_git)
                per = {k: round(v / args.count_git, 2) for k, v in counts.most_common()}
                print(f"{name}: {sum(counts.values()) / args.count_git:.1f} git processes per task: {per}", flush=True)
        if not args.tasks:
            return
        starts = ["warm"] if args.warm else args.starts.split(",")
        print("start: cold = a fresh repository; warm = after a warm-up run of the same repository")
        print("| round | files | tasks | code | start (trees kept before) | wall | CPU | CPU per task | peak RSS "
              "| integration tail | tail share | checkouts held (peak) | disk held | trees kept after |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        found: dict[tuple[int, str, str], list[float]] = collections.defaultdict(list)
        scripts: list[tuple[float, float]] = []
        for round_ in range(1, args.repeat + 1):
            if args.script and args.repeat > 1:  # in every round, beside the runs it is compared with
                scripts.append(script_round(args.files, args.script, recycle=True))
                print(f"| {round_} | {args.files} | {args.script} | hand-written script, one folder reset per task | "
                      f"| | | {1000 * scripts[-1][0]:.0f} ms (+ {1000 * scripts[-1][1]:.0f} ms its interpreter) "
                      "| | | | | | |", flush=True)
            for n in (int(t) for t in args.tasks.split(",")):
                for start in starts:
                    for name, src in sources.items():
                        r = run_plait(src, args.files, n, warm=start == "warm", jobs=args.jobs)
                        found[n, name, start].append(r["cpu"] / n)
                        print(f"| {round_} | {args.files} | {n} | {name} | {start} ({r['kept_before']}) | "
                              f"{r['wall']:.1f} s | {r['cpu']:.1f} s | {1000 * r['cpu'] / n:.0f} ms | "
                              f"{r['rss']:.0f} MB | "
                              f"{r['tail']:.1f} s | {100 * r['tail_share']:.1f} % | {r['held']:.0f} | "
                              f"{r['held'] * r['tree_mb']:.0f} MB | {r['kept_after']} |"
                              + (f" {r['failed']} task(s) failed" if r["failed"] else ""), flush=True)
        if args.repeat > 1:
            print(f"\nmedians of {args.repeat} rounds, CPU per task")
            if scripts:
                spawned = statistics.median(s for s, _ in scripts)
                whole = statistics.median(s + o for s, o in scripts)
                print(f"hand-written script: {1000 * spawned:.0f} ms (its git and shell processes), "
                      f"{1000 * whole:.0f} ms with its own interpreter")
            print("| tasks | code | start | CPU per task (median) | rounds | / script's processes | / whole script |")
            print("|---|---|---|---|---|---|---|")
            for (n, name, start), values in found.items():
                median = statistics.median(values)
                ratios = (f"{median / spawned:.2f} | {median / whole:.2f}" if scripts else " | ")
                print(f"| {n} | {name} | {start} | {1000 * median:.0f} ms | "
                      f"{', '.join(f'{1000 * v:.0f}' for v in values)} | {ratios} |")

if __name__ == "__main__":
    main()

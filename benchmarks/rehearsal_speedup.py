"""Wall clock of a real 8-task plan run by real Claude Code at --jobs 4 vs --jobs 1.

Each task's agent is the real `claude` binary (installed by scripts/install-agent-clis) talking to
plait's scripted model server with a fixed latency per model turn (default 1 s), via
`plait run --rehearse`. Both job counts run in the same invocation, alternating, on the same
machine; the script prints every run and the medians.

Run: .venv/bin/python -m benchmarks.rehearsal_speedup [--repeat 3] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from plait.testing import agent_bin

TASKS = [{"id": f"t{i}", "title": f"module {i}", "prompt": f"Write m{i}.py", "files": [f"m{i}.py"],
          "script": {"write": {f"m{i}.py": f"VALUE = {i}\n"}}, "verify": f"python3 -c 'import m{i}'"}
         for i in range(6)]
TASKS += [
    {"id": "t6", "title": "sum 0+1", "prompt": "Write s01.py", "needs": ["t0", "t1"], "files": ["s01.py"],
     "script": {"write": {"s01.py": "import m0, m1\nTOTAL = m0.VALUE + m1.VALUE\n"}},
     "verify": "python3 -c 'import s01; assert s01.TOTAL == 1'"},
    {"id": "t7", "title": "sum 2+3", "prompt": "Write s23.py", "needs": ["t2", "t3"], "files": ["s23.py"],
     "script": {"write": {"s23.py": "import m2, m3\nTOTAL = m2.VALUE + m3.VALUE\n"}},
     "verify": "python3 -c 'import s23; assert s23.TOTAL == 5'"},
]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args], cwd=cwd,
                   check=True, capture_output=True)


def setup(root: Path, claude: Path) -> tuple[Path, Path]:
    repo = root / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("benchmark\n")
    (repo / "plait.toml").write_text(f'[profiles.claude]\nadapter = "claude"\nbinary = "{claude}"\n')
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    plan = root / "plan.yaml"
    doc = {"plait": 1, "name": "rehearsal benchmark", "defaults": {"agent": "claude"},
           "integration": {"verify": "python3 -c 'import s01, s23'"}, "tasks": TASKS}
    plan.write_text(yaml.safe_dump(doc, sort_keys=False))
    return repo, plan


def one_run(repo: Path, plan: Path, jobs: int, latency: float) -> dict[str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "plait", "run", str(plan), "--rehearse", "--rehearse-latency",
                           str(latency), "--jobs", str(jobs)], cwd=repo, capture_output=True, text=True)
    outside = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed:\n{done.stdout}\n{done.stderr}")
    status = json.loads(subprocess.run([sys.executable, "-m", "plait", "status", "--json"], cwd=repo,
                                       capture_output=True, text=True, check=True).stdout)
    m = status["metrics"]
    return {"jobs": jobs, "process_seconds": outside, "wall_seconds": m["wall_seconds"],
            "task_seconds": m["task_seconds"], "speedup": m["speedup"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    claude = agent_bin("claude")
    if claude is None:
        raise SystemExit("claude is not installed: run scripts/install-agent-clis")
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as tmp:
        repo, plan = setup(Path(tmp), claude)
        rows: list[dict[str, float]] = []
        for i in range(args.repeat):
            for jobs in ((1, 4) if i % 2 == 0 else (4, 1)):
                row = one_run(repo, plan, jobs, args.latency)
                rows.append(row)
                print(f"jobs {jobs}: wall {row['wall_seconds']:.1f}s (process {row['process_seconds']:.1f}s), "
                      f"sum of task times {row['task_seconds']:.1f}s", flush=True)
    seq = statistics.median(r["process_seconds"] for r in rows if r["jobs"] == 1)
    par = statistics.median(r["process_seconds"] for r in rows if r["jobs"] == 4)
    print(f"median process wall: --jobs 1 {seq:.1f}s, --jobs 4 {par:.1f}s; ratio {par / seq:.2f} "
          f"({seq / par:.2f}x faster)")


if __name__ == "__main__":
    main()

"""What the benchmarks share: a clean environment for git, generated repositories and plans, CPU timing, and
an earlier revision's code to compare with."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# No GIT_* from the caller, a fixed identity, and bytecode written once and then used (PYTHONDONTWRITEBYTECODE
# would compile every module at every call, which no user's plait does).
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "PYTHONDONTWRITEBYTECODE"},
       "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "bench",
       "GIT_COMMITTER_EMAIL": "b@x"}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env or ENV, check=True, capture_output=True, text=True,
                          input=input).stdout


def make_repo(path: Path, files: int, plan_tasks: int = 0, name: str = "bench") -> Path:
    """A repository of `files` files (about 100 bytes each, in 350 folders; a README alone for none), one commit;
    with `plan_tasks`, a plan.yaml of that many independent `script` tasks, each writing one new file."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    if not files:
        (path / "README.md").write_text(f"{name} benchmark\n")
    for i in range(files):
        f = path / f"d{i % 50}" / f"e{i % 7}" / f"f{i}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"file {i}\n" * 10)
    if plan_tasks:
        plan = ["plait: 1", f"name: {name}", "defaults: {agent: script, verify: 'true'}",
                "integration: {verify: 'true'}", "tasks:"]
        for i in range(plan_tasks):
            plan += [f"  - id: t{i}", f"    title: Task {i}", f"    prompt: write out/f{i}.txt",
                     f"    files: [out/f{i}.txt]", f"    script: {{write: {{out/f{i}.txt: '{i}'}}}}"]
        (path / "plan.yaml").write_text("\n".join(plan) + "\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial")
    return path / "plan.yaml"


def export(rev: str, into: Path) -> Path:
    """plait's package as it was at `rev` (its `src/`), without touching the working tree."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, env=ENV, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def cpu() -> float:
    """CPU seconds of this process and every child it waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(step: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of `step()`."""
    wall, used = time.perf_counter(), cpu()
    step()
    return time.perf_counter() - wall, cpu() - used

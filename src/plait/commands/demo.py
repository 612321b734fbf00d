"""`plait demo`: a real plan run in parallel on a fresh demo repository, no API key needed."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from rich.console import Console

from plait import api
from plait.commands.run import execute_with_progress, finish, warn_unconfined
from plait.errors import PlaitError
from plait.git.repo import Git
from plait.run.engine import RunOptions


def create_demo_repo(directory: Path | None) -> Path:
    target = directory or Path(tempfile.mkdtemp(prefix="plait-demo-"))
    if target.exists() and any(target.iterdir()):
        raise PlaitError(f"{target} is not empty", "give --dir a new or empty directory")
    source = resources.files("plait.demo")
    with resources.as_file(source / "project") as project:
        shutil.copytree(project, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with resources.as_file(source / "plan.yaml") as plan:
        shutil.copy(plan, target / "plan.yaml")
    Git.init(target, initial_commit="authkit: the demo project before plait")
    return target


def demo(jobs: int, directory: Path | None, console: Console) -> int:
    # The demo's verify commands run `python3 -m pytest`: make that this interpreter, which has
    # pytest when plait was installed with its `demo` extra.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    repo_dir = create_demo_repo(directory)
    console.print(f"demo repository: [bold]{repo_dir}[/] (a small Python project, git-initialised)")
    repo, run_id = api.start(repo_dir / "plan.yaml", RunOptions(jobs=jobs), cwd=repo_dir)
    total = api.task_count(repo, run_id)
    console.print(f"running {total} tasks with the built-in `script` agent, --jobs {jobs}; "
                  "each task is verified by its own pytest run")
    warn_unconfined(repo, run_id, console)
    code = finish(repo, run_id, execute_with_progress(repo, run_id, console), console)
    plait = f"{shlex.quote(sys.executable)} -m plait"  # works whether or not plait is on PATH
    console.print(f"  look around: cd {repo_dir} && git branch --list 'plait/*' && {plait} status {run_id}",
                  soft_wrap=True)
    return code

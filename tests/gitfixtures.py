"""Helpers for the plait.git tests: real repositories in tmp_path, commits made with plumbing so
the user's checkout is never involved, and a snapshot of everything a user could see."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")


def git(cwd: Path, *args: str, input: str | None = None, env: Mapping[str, str] | None = None,
        strip: bool = True) -> str:
    # A test may set GIT_DIR and friends for plait's sake; these helpers must not follow them.
    inherited = {k: v for k, v in os.environ.items() if k not in REPO_LOCATION_VARS}
    done = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, text=True,
                          env={**inherited, **(env or {})})
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip() if strip else done.stdout


def make_repo(path: Path, files: Mapping[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for rel, content in (files or {"README.md": "# project\n"}).items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def commit_on(repo: Path, parent: str, files: Mapping[str, str | None], message: str = "change",
              branch: str | None = None) -> str:
    """A commit on top of `parent` writing (or, for None, deleting) `files`, made in a private index
    so no checkout is touched; moves `refs/heads/<branch>` when given."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(repo, "read-tree", parent, env=env)
        for rel, content in files.items():
            if content is None:
                git(repo, "update-index", "--force-remove", "--", rel, env=env)
            else:
                blob = git(repo, "hash-object", "-w", "--stdin", input=content)
                git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}", env=env)
        tree = git(repo, "write-tree", env=env)
    sha = git(repo, "commit-tree", tree, "-p", parent, "-m", message)
    if branch:
        git(repo, "update-ref", f"refs/heads/{branch}", sha)
    return sha


def files_at(repo: Path, rev: str) -> dict[str, str]:
    """Path -> content of every file in a commit or tree."""
    names = git(repo, "ls-tree", "-r", "-z", "--name-only", rev).split("\0")
    return {n: git(repo, "cat-file", "blob", f"{rev}:{n}", strip=False) for n in names if n}


def snapshot(repo: Path) -> dict[str, str]:
    """What the user sees: HEAD, index and working tree status, file bytes, refs outside plait's."""
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    return {
        "HEAD": git(repo, "symbolic-ref", "HEAD") + " " + git(repo, "rev-parse", "HEAD"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "index": git(repo, "ls-files", "--stage"),
        "refs": "\n".join(r for r in refs if not r.startswith("refs/heads/plait/")),
        "files": "\n".join(f"{p.relative_to(repo)}:{p.read_bytes().hex()}" for p in sorted(repo.rglob("*"))
                           if p.is_file() and ".git" not in p.parts and ".plait" not in p.parts),
    }


def user_repo(tmp_path: Path) -> Iterator[Path]:
    """For a fixture (`yield from user_repo(tmp_path)`): a repository with a user mid-work (a staged
    edit, an unstaged edit, an untracked file); fails the test unless that is byte-identical at the end."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# project\n", "src/app.py": "print('hi')\n"})
    (repo / "README.md").write_text("# project\nstaged line\n")
    git(repo, "add", "README.md")
    (repo / "src/app.py").write_text("print('unstaged')\n")
    (repo / "notes.txt").write_text("untracked\n")
    (repo / ".plait").mkdir()
    (repo / ".plait" / ".gitignore").write_text("*\n")
    before = snapshot(repo)
    yield repo
    assert snapshot(repo) == before, "the user's checkout, index or branches changed"

"""Helpers for the hostile-agent tests: a user's repository mid-work, a byte-level picture of
everything in it that plait must never change, and the attacks themselves as shell commands."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

from runfixtures import git, make_repo


def dirty_repo(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    """A repository the way a user leaves it: a staged file, an unstaged edit, an untracked file,
    an extra branch, a stash entry and a hook of their own."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# project\n", "src/app.py": "print('hi')\n",
                                          "notes/keep.txt": "keep\n", **(extra or {})})
    git(repo, "branch", "feature")
    (repo / "src/app.py").write_text("print('stashed')\n")
    git(repo, "stash", "-q")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "README.md").write_text("# project\nunstaged edit\n")
    (repo / "untracked.txt").write_text("untracked\n")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    git(repo, "pack-refs", "--all")  # so packed-refs exists and is compared too
    return repo


def user_side(repo: Path) -> dict[str, str]:
    """Everything of the user's that plait must leave byte-identical: HEAD, every ref outside
    `refs/heads/plait/` (loose and packed), the index, config, hooks, stash, the worktree list, and
    every working file (untracked ones too) with its mode. `.plait/` is plait's own."""
    dot_git = repo / ".git"
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    packed = dot_git / "packed-refs"
    picture = {
        "HEAD": (dot_git / "HEAD").read_text(),
        "refs": "\n".join(r for r in refs if not r.startswith("refs/heads/plait/")),
        "packed-refs": "\n".join(line for line in packed.read_text().splitlines() if " refs/heads/plait/" not in line)
        if packed.exists() else "",
        "index": _digest(dot_git / "index"),
        "config": (dot_git / "config").read_text(),
        "stash": git(repo, "stash", "list", "--format=%H %gs"),
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
    }
    for path in sorted((dot_git / "hooks").iterdir()):
        picture[f"hook {path.name}"] = f"{oct(path.lstat().st_mode)} {_digest(path)}"
    for dirpath, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if d not in (".git", ".plait")] if Path(dirpath) == repo else dirs
        for name in files:
            path = Path(dirpath) / name
            picture[f"file {path.relative_to(repo)}"] = f"{oct(path.lstat().st_mode)} {_digest(path)}"
    return picture


def _digest(path: Path) -> str:
    if path.is_symlink():
        return f"-> {os.readlink(path)}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def marked(tag: str) -> list[int]:
    """Host pids of processes whose command line holds `tag` (agents' pids are their namespace's own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return [p for p in found if alive(p)]


def wait_gone(pids: list[int], timeout: float = 60.0) -> list[int]:
    """Wait (generously) for the processes to end; returns those still alive."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True

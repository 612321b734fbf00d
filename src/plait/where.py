"""Where the repository is, found without running git and without pathlib: `plait status` reads the state of
a run from here in milliseconds (docs/benchmarks.md). `plait.git.repo.Git.find` uses it too."""

from __future__ import annotations

import os


def locate(start: str) -> tuple[str, str, str] | None:
    """(work tree, common dir, git dir) of the repository the real path `start` is in, when plain to see: the
    first `.git` up from `start`, a folder or a file naming the git dir (a linked worktree, a submodule), and the
    common dir its `commondir` names. None for what git would treat differently (a bare repository, a
    `core.worktree`, inside `.git`, another file system or another user's folder on the way up)."""
    try:
        device = os.stat(start).st_dev
        folder = start
        while True:
            info = os.stat(folder)
            if info.st_dev != device or info.st_uid != os.getuid():
                return None
            dot = os.path.join(folder, ".git")
            if os.path.isdir(dot):
                git_dir = dot
            elif os.path.isfile(dot):
                text = _read(dot)
                if not text.startswith("gitdir: "):
                    return None
                git_dir = os.path.realpath(os.path.join(folder, text.removeprefix("gitdir: ").strip()))
            else:
                parent = os.path.dirname(folder)
                if parent == folder:
                    return None
                folder = parent
                continue
            common = git_dir
            if os.path.isfile(os.path.join(git_dir, "commondir")):
                common = os.path.realpath(os.path.join(git_dir, _read(os.path.join(git_dir, "commondir")).strip()))
            config = _read(os.path.join(common, "config"))
            inside = start == git_dir or start.startswith(git_dir.rstrip(os.sep) + os.sep)
            if not os.path.isfile(os.path.join(git_dir, "HEAD")) or inside or "worktree" in config \
                    or "bare = true" in config:
                return None
            return folder, common, git_dir
    except (OSError, UnicodeDecodeError):
        return None


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()

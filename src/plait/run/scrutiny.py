"""What plait checks about an attempt beyond its diff: what the agent did to its own repository,
mass deletions, and deletions of plait's plan and config.

The workspace's `.git` belongs to the agent, so it is only *read*, as plain files, never through
git (its config could name programs to run) and never following a symlink.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# A task deleting more files than this, or more than half of its base, needs `allow_deletions`.
MAX_DELETIONS = 25


def repo_state(tree: Path) -> dict[str, str]:
    """A fingerprint of the workspace repository: what `.git` is, HEAD, every ref, config and hooks."""
    dot_git = tree / ".git"
    try:
        kind = os.lstat(dot_git)
    except FileNotFoundError:
        return {".git": "missing"}
    if os.path.islink(dot_git):
        return {".git": f"symlink to {os.readlink(dot_git)}"}
    if not os.path.isdir(dot_git):
        return {".git": f"a file ({kind.st_size} bytes)"}
    state = {".git": "directory"}
    for name in ("HEAD", "config", "packed-refs"):
        state[name] = _digest(dot_git / name)
    state["HEAD"] = _read(dot_git / "HEAD")
    for folder in ("refs", "hooks", "logs/refs/stash"):
        root = dot_git / folder
        for dirpath, _dirs, files in os.walk(root):  # os.walk never follows symlinked directories
            for name in files:
                path = Path(dirpath) / name
                state[str(path.relative_to(dot_git))] = _digest(path)
    return state


def repo_notes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What changed in the workspace repository, one line each, for the evidence."""
    if after.get(".git") != "directory":
        return [f"the agent's workspace repository changed: .git is now {after.get('.git')} "
                "(nothing outside the workspace was affected; plait captured the files)"]
    notes = []
    if after.get("HEAD") != before.get("HEAD"):
        notes.append(f"the agent moved HEAD in its workspace repository to {after.get('HEAD', '?')!r}")
    if after.get("config") != before.get("config"):
        notes.append("the agent changed its workspace repository's config")
    changed = sorted(k for k in set(before) | set(after)
                     if k.startswith(("refs/", "hooks/", "logs/")) and before.get(k) != after.get(k))
    if after.get("packed-refs") != before.get("packed-refs"):
        changed.append("packed-refs")
    if changed:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        notes.append(f"the agent created or changed refs/hooks in its workspace repository: {shown}")
    return notes


def deletion_problem(deleted: Sequence[str], base_files: int, protected: Sequence[str]) -> str | None:
    """Why these deletions need `allow_deletions: true`, or None."""
    hit = sorted(p for p in deleted if p in protected or p.startswith(".plait/"))
    if hit:
        return f"deleted plait's plan or config: {', '.join(hit)}"
    if len(deleted) > MAX_DELETIONS or (len(deleted) >= 2 and len(deleted) * 2 > base_files):
        return f"deleted {len(deleted)} of the {base_files} files of its base"
    return None


def _read(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    with os.fdopen(fd, "rb") as f:
        return f.read(4096).decode(errors="replace").strip()


def _digest(path: Path) -> str:
    """What changes whenever the file is written, replaced, moved or re-moded: its inode, mode, size and times
    (the change time cannot be set back), from one `lstat` instead of reading and hashing the file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    return f"{st.st_mode:o} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"

"""Commit objects written straight into the object store: a merge's stand-in (a commit no one sees), and the
commits plait makes one or two of per task (its capture, the integration's merge), as `git commit-tree` would.

`git commit-tree` costs a process (~3 ms of CPU) per commit, and a merge chain makes a stand-in for most
tasks (`plait.git.merge.Chain`). A commit is small enough to write as git itself writes a loose object:
`commit <size>\\0<body>` deflated with zlib, at `objects/<2 hex>/<38 hex>` of the SHA-1 of the undeflated
bytes, made in a temporary file beside it and linked into place, so a reader sees all of it or nothing.
Only for SHA-1 repositories with git's default permissions (`Git.plain_objects`); elsewhere the caller
runs `git commit-tree`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

# A stand-in is internal and no ref ever names it, so one identity and one date serve for all, and the same
# stand-in is the same object (written once). The date is far ahead, not 0: merge-base walks the newest
# commits first, and a start dated before its parents would be walked after the other side's whole history;
# like one `git commit-tree` makes now, it is newer than everything it is merged with.
IDENTITY = "plait <plait@localhost> 4102444800 +0000"  # 2100-01-01
HEX_DIGITS = frozenset("0123456789abcdef")


def now(who: str) -> str:
    """`who` ("name <email>") with the time now, as git dates a commit: seconds and the local offset."""
    seconds = time.time()
    offset = time.localtime(seconds).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    return f"{who} {int(seconds)} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"


def commit_bytes(tree: str, parents: Sequence[str], message: str, identity: str = IDENTITY) -> bytes:
    """The body of a commit object, as `git cat-file commit` prints it."""
    lines = [f"tree {tree}", *(f"parent {p}" for p in parents), f"author {identity}", f"committer {identity}"]
    return ("\n".join(lines) + "\n\n" + message.rstrip("\n") + "\n").encode()


def write_commit(objects_dir: Path, tree: str, parents: Sequence[str], message: str, identity: str = IDENTITY) -> str:
    """Write a commit of `tree` with `parents` as a loose object (if it is not there yet); its id. `identity`:
    author and committer with their date (`now`); a stand-in's by default."""
    for sha in (tree, *parents):
        if len(sha) != 40 or not HEX_DIGITS.issuperset(sha):
            raise ValueError(f"not a SHA-1 object id: {sha!r}")
    body = commit_bytes(tree, parents, message, identity)
    data = b"commit %d\0" % len(body) + body
    sha = hashlib.sha1(data).hexdigest()
    folder = objects_dir / sha[:2]
    path = folder / sha[2:]
    try:
        os.utime(path)  # there already (the same stand-in before): freshened, as git does, so no prune takes it now
        return sha
    except FileNotFoundError:
        pass
    except OSError:
        return sha  # there, but another user's
    folder.mkdir(exist_ok=True)  # 0o777 less the umask, as git makes it
    fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(zlib.compress(data, 1))  # git's core.looseCompression default
        os.chmod(tmp, 0o444)  # loose objects are read-only
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another writer got there first: the same bytes
        except OSError:
            os.replace(tmp, path)  # no hard links here (git falls back the same way)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return sha

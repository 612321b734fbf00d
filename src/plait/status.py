"""A run's status as plain data: what `plait status --json`, the MCP server's `status` tool and the dashboard
show. Read from the state database in one snapshot, so a script polling a live run of 1,000 tasks gets its
answer in tens of milliseconds (docs/benchmarks.md): the task graph was recorded with the run, the summary of
its events is kept current as they are written, whether a process runs it is asked of its lock (never of
git), and `plait status --json` answers with the document it printed last while nothing it was made from has
changed. This module imports only SQLite and what finds the repository and the lock; the document is built
by plait.statusdoc (JSON, the metrics), imported when one is built."""

from __future__ import annotations

import os
import sqlite3

from plait import where
from plait.run import liveness

TYPE_CHECKING = False  # typing and pathlib cost a status read more than this whole module; mypy treats this as True
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

MERGED_FILE = "merged-context.json"  # written in the run's evidence folder when it ends (plait.run.merged)
READY_FILE = "status-ready.json"
READY_FORMAT = "plait-status/1"  # a document of another shape is never answered


def document(run_id: str | None = None, cwd: str | Path | None = None) -> dict[str, Any]:
    """The run's state (the latest run's without `run_id`): the seed-001 fields plus per-task detail and metrics."""
    found = _answer(run_id, cwd, ready=False)
    assert isinstance(found, dict)
    return found


def document_json(run_id: str | None = None, cwd: str | Path | None = None) -> str:
    """`document` as one line of JSON, as `plait status --json` prints it. The last one printed is kept ready
    (`<git-common-dir>/plait/status-ready.json`) with what it was made from: the run, its last event, whether a
    process held it, its merged context's time and the work tree asking. While none of them changed, that
    document is the answer, unread and unbuilt."""
    found = _answer(run_id, cwd, ready=True)
    assert isinstance(found, str)
    return found


def _answer(run_id: str | None, cwd: str | Path | None, ready: bool) -> dict[str, Any] | str:
    root, common = repository(cwd)
    path = os.path.join(common, "plait", "state.db")
    if not os.path.exists(path):
        raise _error("no runs yet in this repository", "start one with `plait run PLAN`")
    ready_path = os.path.join(common, "plait", READY_FILE)
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN")  # one snapshot: a writer's transaction lands before or after all of it
            run = _run(db, run_id)
            rid = run["id"]
            live = liveness.held(liveness.lock_path(common, rid))
            if ready:
                seq = db.execute("SELECT max(seq) FROM events WHERE run_id=?", (rid,)).fetchone()[0]
                key = f"{READY_FORMAT} {rid} {seq} {live} {_mtime(_evidence(root, rid))} {root}"
                text = _ready(ready_path, key)
                if text is not None:
                    return text
            from plait import statusdoc  # only now: a document kept ready needed none of it

            tasks, attempts, summary = statusdoc.read(db, run)
            db.execute("COMMIT")
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        from plait.state import unreadable

        raise unreadable(path, exc) from exc
    doc = statusdoc.build(root, run, tasks, attempts, summary, live)
    if not ready:
        return doc
    text = statusdoc.as_json(doc)
    _keep(ready_path, key, text)
    return text


def repository(cwd: str | Path | None = None) -> tuple[str, str]:
    """(work tree, git common dir) of the repository `cwd` (or the current folder) is in; git is asked only
    when the layout is not plain to see (`plait.git.repo.Git.find`)."""
    start = os.path.realpath(cwd if cwd is not None else os.getcwd())
    found = where.locate(start)
    if found is not None:
        return found[0], found[1]
    from pathlib import Path

    from plait.git.repo import Git

    git = Git.find(Path(start))
    return str(git.root), str(git.common_dir)


def _run(db: sqlite3.Connection, run_id: str | None) -> dict[str, Any]:
    """The run's row (the latest run's without `run_id`)."""
    if run_id is None:
        runs = rows(db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT 1"))
        if not runs:
            raise _error("no runs yet in this repository", "start one with `plait run PLAN`")
    else:
        runs = rows(db.execute("SELECT * FROM runs WHERE id=?", (run_id,)))
        if not runs:
            recent = [r[0] for r in db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 5")][::-1]
            raise _error(f"no run {run_id!r} in this repository", f"recent runs: {', '.join(recent) or 'none'} "
                         "(`plait status`)")
    return runs[0]


def _evidence(root: str, run_id: str) -> str:
    return os.path.join(root, ".plait", "runs", run_id)


def _mtime(run_dir: str) -> int:
    try:
        return os.stat(os.path.join(run_dir, MERGED_FILE)).st_mtime_ns
    except OSError:
        return 0


def _ready(path: str, key: str) -> str | None:
    """The document kept ready, if it was made from what `key` says."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.readline().rstrip("\n") == key:
                return f.readline().rstrip("\n") or None
    except (OSError, ValueError):
        pass
    return None


def _keep(path: str, key: str, text: str) -> None:
    """Keep the document ready for the next read (written aside, then renamed: a reader sees all or nothing).
    A repository this user may not write is only read."""
    aside = f"{path}.{os.getpid()}"
    try:
        with open(aside, "w", encoding="utf-8") as f:
            f.write(f"{key}\n{text}\n")
        os.replace(aside, path)
    except OSError:
        if os.path.lexists(aside):  # written but not renamed: it was this process's to write, and to delete
            os.unlink(aside)


def rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """The rows as dicts: zipped with the column names, twice as fast as through `sqlite3.Row` (a status read
    of 1,000 tasks)."""
    cursor.row_factory = None
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _error(message: str, fix: str) -> Exception:
    from plait.errors import PlaitError  # only when there is one: it is not a cheap import

    return PlaitError(message, fix)

"""Run state in SQLite (WAL) in the git common dir: an append-only event log is the truth;
`runs`, `tasks` and `attempts` hold the current state and change in the same transaction as the
event that changes them. Every write goes through `Store.emit`.
"""

from __future__ import annotations

import json
import sqlite3
import string
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from plait.errors import PlaitError
from plait.redact import redact

SCHEMA = [
    # 1: the initial schema
    """
    CREATE TABLE runs(
        id TEXT PRIMARY KEY, plan_path TEXT, plan_name TEXT, plan_json TEXT, repo_root TEXT,
        base_sha TEXT, jobs INTEGER, options_json TEXT, status TEXT, created_at REAL,
        started_at REAL, finished_at REAL, pid INTEGER, heartbeat_at REAL, summary_json TEXT);
    CREATE TABLE tasks(
        run_id TEXT, task_id TEXT, title TEXT, position INTEGER, state TEXT, attempt INTEGER DEFAULT 0,
        branch TEXT, worktree TEXT, base_sha TEXT, commit_sha TEXT, started_at REAL, finished_at REAL,
        verify_exit INTEGER, verify_seconds REAL, error TEXT, conflicts_json TEXT DEFAULT '[]',
        deviations_json TEXT DEFAULT '[]', cost_usd REAL, tokens_in INTEGER, tokens_out INTEGER,
        PRIMARY KEY(run_id, task_id));
    CREATE TABLE attempts(
        run_id TEXT, task_id TEXT, attempt INTEGER, started_at REAL, finished_at REAL, outcome TEXT,
        error_kind TEXT, error TEXT, agent_exit INTEGER, PRIMARY KEY(run_id, task_id, attempt));
    CREATE TABLE events(
        seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, task_id TEXT, ts REAL, kind TEXT, data_json TEXT);
    CREATE INDEX events_run_seq ON events(run_id, seq);
    """,
    # 2: what an agent tried that the sandbox refused, and what it did to its own workspace repository
    """
    ALTER TABLE tasks ADD COLUMN incidents_json TEXT DEFAULT '[]';
    """,
    # 3: the review of a task's work (ReviewRecord.summary: verdict, rounds, last comments, cost)
    """
    ALTER TABLE tasks ADD COLUMN review_json TEXT;
    """,
    # 4: what a task's work depends on (plait.run.reuse.input_keys), and the earlier run whose verified work a
    # new run took instead of running the task again
    """
    ALTER TABLE tasks ADD COLUMN input_key TEXT;
    ALTER TABLE tasks ADD COLUMN reused_from TEXT;
    CREATE INDEX tasks_input_key ON tasks(input_key);
    """,
    # 5: how long each verified task took, with what the plan estimated (plait.history learns estimates from
    # it): numbers and profile and role names only
    """
    CREATE TABLE durations(
        run_id TEXT, task_id TEXT, profile TEXT, role TEXT, size TEXT, estimate_seconds REAL, seconds REAL,
        finished_at REAL, PRIMARY KEY(run_id, task_id));
    CREATE INDEX durations_finished ON durations(finished_at);
    """,
]

RUN_COLUMNS = {"plan_path", "plan_name", "plan_json", "repo_root", "base_sha", "jobs", "options_json", "status",
               "created_at", "started_at", "finished_at", "pid", "heartbeat_at", "summary_json"}
TASK_COLUMNS = {"title", "position", "state", "attempt", "branch", "worktree", "base_sha", "commit_sha",
                "started_at", "finished_at", "verify_exit", "verify_seconds", "error", "conflicts_json",
                "deviations_json", "incidents_json", "review_json", "cost_usd", "tokens_in", "tokens_out",
                "input_key", "reused_from"}
ATTEMPT_COLUMNS = {"started_at", "finished_at", "outcome", "error_kind", "error", "agent_exit"}
DURATION_COLUMNS = {"run_id", "task_id", "profile", "role", "size", "estimate_seconds", "seconds", "finished_at"}


class TaskState(StrEnum):
    """Every state a task can be in; status, counts and the report all count every one of them."""

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"  # an attempt failed transiently; the next waits out its back-off
    DONE = "done"  # verified
    FAILED = "failed"
    BLOCKED = "blocked"  # a task it needs failed (or the run stopped before it could start)
    CANCELLED = "cancelled"


class EventKind(StrEnum):
    """Every kind of event in the log (`events.kind`): what the report, status and dashboards read."""

    DELIVERED = "delivered"
    INTEGRATION_CONCERNS = "integration.concerns"  # the integration verifier marked the concerns
    INTEGRATION_CONFLICT = "integration.conflict"
    INTEGRATION_STARTED = "integration.started"
    INTEGRATION_FIXED = "integration.fixed"  # the end review's fixer
    INTEGRATION_REPAIRED = "integration.repaired"  # the integration engineer's rounds ended
    INTEGRATION_REPAIRING = "integration.repairing"
    INTEGRATION_RESOLVED = "integration.resolved"  # the resolver's rounds on one conflict ended
    INTEGRATION_RESOLVING = "integration.resolving"
    INTEGRATION_REVIEWED = "integration.reviewed"  # the end review's verdict
    INTEGRATION_REVIEWING = "integration.reviewing"
    INTEGRATION_VERIFIED = "integration.verified"
    LIMITS_BACKOFF = "limits.backoff"
    LIMITS_INCREASE = "limits.increase"
    REHEARSAL_SERVER = "rehearsal.server"
    RUN_BUDGET_SPENT = "run.budget_spent"
    RUN_CANCEL_REQUESTED = "run.cancel_requested"
    RUN_CANCELLED = "run.cancelled"
    RUN_CANCELLING = "run.cancelling"
    RUN_ESTIMATES = "run.estimates"  # the estimates the run schedules by, learned from earlier runs (plait.history)
    RUN_FINISHED = "run.finished"
    RUN_GATE_FAILED = "run.gate_failed"
    RUN_INTERRUPTED = "run.interrupted"
    RUN_STARTED = "run.started"
    TASK_AGENT_DONE = "task.agent_done"
    TASK_ATTEMPT_DONE = "task.attempt_done"
    TASK_BLOCKED = "task.blocked"
    TASK_CANCELLED = "task.cancelled"
    TASK_CAPTURED = "task.captured"
    TASK_CONFLICT = "task.conflict"
    TASK_DONE = "task.done"
    TASK_FAILED = "task.failed"
    TASK_FIXED = "task.fixed"
    TASK_NODE_LOST = "task.node_lost"  # the Ray executor lost the attempt's node: it runs again elsewhere
    TASK_RESET = "task.reset"
    TASK_RETRY = "task.retry"
    TASK_REUSED = "task.reused"  # done with an earlier run's verified work: its inputs are unchanged
    TASK_REVIEWED = "task.reviewed"
    TASK_REVIEWING = "task.reviewing"
    TASK_STARTED = "task.started"
    TASK_VERIFIED = "task.verified"
    TASK_WORKSPACE = "task.workspace"


# Events a run's own process does not write: the next process's preparations before its `run.started`
# (`task.reset`, the rehearsal server, the learned estimates) and `plait cancel` from another shell. They say
# nothing about when the process before them stopped.
NOT_THE_RUNNER = {EventKind.TASK_RESET, EventKind.REHEARSAL_SERVER, EventKind.RUN_ESTIMATES,
                  EventKind.RUN_CANCEL_REQUESTED, EventKind.RUN_CANCELLED}
# The integration agents' events the report describes one line each (plait.report.integration_lines).
INTEGRATION_AGENTS = {EventKind.INTEGRATION_RESOLVED, EventKind.INTEGRATION_REPAIRED, EventKind.INTEGRATION_CONCERNS,
                      EventKind.INTEGRATION_REVIEWED, EventKind.INTEGRATION_FIXED}


def fold(summary: dict[str, Any], kind: str, task_id: str | None, ts: float, data: Mapping[str, Any]) -> None:
    """Add one event to a run's summary (`runs.summary_json`): what the metrics read of the event log, kept
    current as events are written, so a status read never goes through every event. `spans`: each process
    that ran the run, from its `run.started` to the last event it wrote; `waits`: (when, delay) of each
    retry's back-off; `integration`: the integration agents' events."""
    spans = summary.setdefault("spans", [])
    if kind == EventKind.RUN_STARTED:
        spans.append([ts, ts])
    elif spans and kind not in NOT_THE_RUNNER:
        spans[-1][1] = max(spans[-1][1], ts)
    if kind == EventKind.TASK_RETRY:
        summary["retries"] = summary.get("retries", 0) + 1
        summary.setdefault("waits", []).append([ts, data.get("delay")])
    elif kind == EventKind.TASK_CONFLICT:
        summary["conflicts"] = summary.get("conflicts", 0) + 1
    elif kind == EventKind.INTEGRATION_STARTED:
        summary.setdefault("integration_started", []).append(ts)
    elif kind in INTEGRATION_AGENTS:
        summary.setdefault("integration", []).append({"kind": kind, "data": dict(data)})
    elif kind == EventKind.RUN_GATE_FAILED and "failed_gate" not in summary:
        summary["failed_gate"] = data.get("gate")
    elif kind == EventKind.RUN_FINISHED:
        summary["why"] = str(data.get("why") or "")
    summary["last"] = f"{kind} {task_id or ''}".strip()


def summarize(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of a run from its events (what `Store.emit` keeps in `runs.summary_json`)."""
    summary: dict[str, Any] = {}
    for e in events:
        fold(summary, e["kind"], e["task_id"], e["ts"], e["data"])
    return summary


def db_path(common_dir: Path) -> Path:
    return common_dir / "plait" / "state.db"


def new_run_id() -> str:
    """Six characters, a letter first: short enough to type, valid in a branch name."""
    import secrets  # here: a status read creates no run, and `secrets` costs a tenth of its imports

    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(secrets.choice(alphabet) for _ in range(5))


class Store:
    """One connection, shared by the engine's threads behind a lock; readers open their own."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise PlaitError(f"{path}: cannot open plait's state database ({exc})",
                             "move the file aside; plait starts a new one (earlier runs' branches stay)") from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        if self._applied() >= set(range(1, len(SCHEMA) + 1)):  # readers (`plait status`) never wait for a writer
            return
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS migrations(version INTEGER PRIMARY KEY, applied_at REAL)")
            done = {r[0] for r in db.execute("SELECT version FROM migrations")}
            for version, sql in enumerate(SCHEMA, start=1):
                if version not in done:
                    for statement in filter(str.strip, sql.split(";")):
                        db.execute(statement)
                    db.execute("INSERT INTO migrations VALUES(?, ?)", (version, time.time()))

    def _applied(self) -> set[int]:
        try:
            return {r[0] for r in self._db.execute("SELECT version FROM migrations")}
        except sqlite3.OperationalError:  # a new database
            return set()

    # -- writes ------------------------------------------------------------------
    def create_run(self, fields: Mapping[str, Any], tasks: list[tuple[str, str]],
                   keys: Mapping[str, str] | None = None) -> str:
        """A new run and its tasks, all pending; `keys`: each task's input key (plait.run.reuse)."""
        keys = keys or {}
        with self._tx() as db:
            while True:
                run_id = new_run_id()
                if not db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone():
                    break
            now = time.time()
            _insert(db, "runs", {"id": run_id, "status": "created", "created_at": now, **fields}, RUN_COLUMNS)
            for position, (task_id, title) in enumerate(tasks):
                db.execute("INSERT INTO tasks(run_id, task_id, title, position, state, input_key) "
                           "VALUES(?,?,?,?,?,?)", (run_id, task_id, title, position, "pending", keys.get(task_id)))
            data = {"tasks": [t for t, _ in tasks], "plan": fields.get("plan_path")}
            self._fold(db, run_id, self._event(db, run_id, None, "run.created", data))
        return run_id

    def emit(
        self,
        run_id: str,
        kind: EventKind,
        task_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        run: Mapping[str, Any] | None = None,
        task: Mapping[str, Any] | None = None,
        attempt: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an event and apply its state changes in one transaction; returns its seq."""
        with self._tx() as db:
            if run:
                _update(db, "runs", run, RUN_COLUMNS, "id=?", (run_id,))
            if task:
                assert task_id is not None
                _update(db, "tasks", task, TASK_COLUMNS, "run_id=? AND task_id=?", (run_id, task_id))
            if attempt:
                assert task_id is not None
                number = attempt.get("attempt") or db.execute(
                    "SELECT attempt FROM tasks WHERE run_id=? AND task_id=?", (run_id, task_id)).fetchone()[0]
                db.execute("INSERT OR IGNORE INTO attempts(run_id, task_id, attempt) VALUES(?,?,?)",
                           (run_id, task_id, number))
                rest = {k: v for k, v in attempt.items() if k != "attempt"}
                if rest:
                    _update(db, "attempts", rest, ATTEMPT_COLUMNS, "run_id=? AND task_id=? AND attempt=?",
                            (run_id, task_id, number))
            seq = self._event(db, run_id, task_id, kind, dict(data or {}))
            self._fold(db, run_id, seq)
            return seq

    @staticmethod
    def _fold(db: sqlite3.Connection, run_id: str, seq: int) -> None:
        """Fold the event `seq` into the run's summary, as it was written (redacted) and in the same transaction.
        A run recorded before summaries existed gets one from all its events first."""
        found = db.execute("SELECT summary_json FROM runs WHERE id=?", (run_id,)).fetchone()
        if found is None:
            return
        if found[0] is None:
            summary = summarize(_events(db, run_id))
        else:
            summary = json.loads(found[0])
            e = _events(db, run_id, seq - 1, seq)[0]
            fold(summary, e["kind"], e["task_id"], e["ts"], e["data"])
        db.execute("UPDATE runs SET summary_json=? WHERE id=?", (json.dumps(summary), run_id))

    def add_duration(self, values: Mapping[str, Any]) -> None:
        """One verified task's duration (plait.history); a task recorded again keeps the newest."""
        bad = set(values) - DURATION_COLUMNS
        assert not bad, f"unknown durations columns {bad}"
        cols = ", ".join(values)
        with self._tx() as db:
            db.execute(f"INSERT OR REPLACE INTO durations({cols}) VALUES({', '.join('?' * len(values))})",
                       tuple(_clean(v) for v in values.values()))

    def heartbeat(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET heartbeat_at=? WHERE id=?", (time.time(), run_id))

    @staticmethod
    def _event(db: sqlite3.Connection, run_id: str, task_id: str | None, kind: str, data: dict[str, Any]) -> int:
        cur = db.execute("INSERT INTO events(run_id, task_id, ts, kind, data_json) VALUES(?,?,?,?,?)",
                         (run_id, task_id, time.time(), kind, _clean(json.dumps(data, default=str, sort_keys=True))))
        return int(cur.lastrowid or 0)

    # -- reads -------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return dict(row) if row else None

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute("SELECT * FROM runs ORDER BY created_at")]

    def tasks(self, run_id: str) -> list[dict[str, Any]]:
        return _dicts(self._db.execute("SELECT * FROM tasks WHERE run_id=? ORDER BY position", (run_id,)))

    def verified_with_key(self, key: str) -> list[dict[str, Any]]:
        """Verified tasks of any run whose inputs had this key, the newest run's first, with their run's
        `repo_root` (where its evidence is)."""
        rows = self._db.execute(
            "SELECT tasks.*, runs.repo_root FROM tasks JOIN runs ON runs.id = tasks.run_id WHERE tasks.input_key=? "
            "AND tasks.state=? AND tasks.commit_sha IS NOT NULL ORDER BY runs.created_at DESC", (key, TaskState.DONE))
        return [dict(r) for r in rows]

    def verified_attempt(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """The task's latest verified attempt."""
        # Under the writers' lock: a read open on this shared connection while a worker thread's BEGIN IMMEDIATE
        # meets a newer snapshot fails that write at once with "database is locked" (no busy wait).
        with self._lock:
            row = self._db.execute("SELECT * FROM attempts WHERE run_id=? AND task_id=? AND outcome='verified' "
                                   "ORDER BY attempt DESC LIMIT 1", (run_id, task_id)).fetchone()
        return dict(row) if row else None

    def durations(self, newest: int = 20_000) -> list[dict[str, Any]]:
        """The newest recorded task durations, oldest first (plait.history)."""
        rows = _dicts(self._db.execute("SELECT * FROM durations ORDER BY finished_at DESC LIMIT ?", (newest,)))
        return rows[::-1]

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        return _dicts(self._db.execute("SELECT * FROM attempts WHERE run_id=? ORDER BY started_at", (run_id,)))

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        return _events(self._db, run_id, after)

    def summary(self, run_id: str) -> dict[str, Any]:
        """The run's summary (see `fold`): kept by `emit`; from the events for a run recorded before that."""
        found = self._db.execute("SELECT summary_json FROM runs WHERE id=?", (run_id,)).fetchone()
        if found is None or found[0] is None:
            return summarize(self.events(run_id))
        return dict(json.loads(found[0]))


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """The rows as dicts: zipped with the column names, twice as fast as through `sqlite3.Row` (a status read
    of 1,000 tasks)."""
    cursor.row_factory = None
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _events(db: sqlite3.Connection, run_id: str, after: int = 0, upto: int | None = None) -> list[dict[str, Any]]:
    rows = db.execute("SELECT * FROM events WHERE run_id=? AND seq>? AND seq<=? ORDER BY seq",
                      (run_id, after, upto if upto is not None else 2**63 - 1))
    return [{**dict(r), "data": json.loads(r["data_json"])} for r in rows]


def _insert(db: sqlite3.Connection, table: str, values: Mapping[str, Any], allowed: set[str]) -> None:
    bad = set(values) - allowed - {"id"}
    assert not bad, f"unknown {table} columns {bad}"
    cols = ", ".join(values)
    db.execute(f"INSERT INTO {table}({cols}) VALUES({', '.join('?' * len(values))})",
               tuple(_clean(v) for v in values.values()))


def _update(db: sqlite3.Connection, table: str, values: Mapping[str, Any], allowed: set[str],
            where: str, args: tuple[Any, ...]) -> None:
    bad = set(values) - allowed
    assert not bad, f"unknown {table} columns {bad}"
    sets = ", ".join(f"{k}=?" for k in values)
    db.execute(f"UPDATE {table} SET {sets} WHERE {where}", (*(_clean(v) for v in values.values()), *args))


def _clean(value: Any) -> Any:
    """Every text that reaches a row: secrets masked (this is the one place rows are written)."""
    return redact(value) if isinstance(value, str) else value

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
from pathlib import Path
from typing import Any

from plait import measure
from plait.errors import PlaitError
from plait.journal import EventKind, TaskState, fold, summarize
from plait.redact import redact
from plait.status import rows

__all__ = ["EventKind", "Store", "TaskState", "db_path", "fold", "summarize", "unreadable"]

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
    # 6: the plan's task graph (needs, gates, levels, order: plait.measure.run_graph), so a status read does not
    # parse the whole plan; and the plan in a table of its own: every event updates its run's row (the summary),
    # and SQLite rewrites a whole row, which with the plan in it was half a megabyte per event at 1,000 tasks
    """
    ALTER TABLE runs ADD COLUMN graph_json TEXT;
    CREATE TABLE plans(run_id TEXT PRIMARY KEY, plan_json TEXT);
    INSERT INTO plans SELECT id, plan_json FROM runs WHERE plan_json IS NOT NULL;
    UPDATE runs SET plan_json=NULL;
    """,
]

RUN_COLUMNS = {"plan_path", "plan_name", "plan_json", "repo_root", "base_sha", "jobs", "options_json", "status",
               "created_at", "started_at", "finished_at", "pid", "heartbeat_at", "summary_json", "graph_json"}
TASK_COLUMNS = {"title", "position", "state", "attempt", "branch", "worktree", "base_sha", "commit_sha",
                "started_at", "finished_at", "verify_exit", "verify_seconds", "error", "conflicts_json",
                "deviations_json", "incidents_json", "review_json", "cost_usd", "tokens_in", "tokens_out",
                "input_key", "reused_from"}
ATTEMPT_COLUMNS = {"started_at", "finished_at", "outcome", "error_kind", "error", "agent_exit"}
# A run's row with its plan's JSON, kept in a table of its own since schema 6 (the runs table's own `plan_json`,
# empty since, comes first in each row and the plan's replaces it)
RUNS_WITH_PLANS = "SELECT runs.*, plans.plan_json FROM runs LEFT JOIN plans ON plans.run_id = runs.id"
DURATION_COLUMNS = {"run_id", "task_id", "profile", "role", "size", "estimate_seconds", "seconds", "finished_at"}


def unreadable(path: str | Path, exc: Exception) -> PlaitError:
    return PlaitError(f"{path}: cannot open plait's state database ({exc})",
                      "move the file aside; plait starts a new one (earlier runs' branches stay)")


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
            raise unreadable(path, exc) from exc

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
            plan = fields.get("plan_json")
            row = {k: v for k, v in fields.items() if k != "plan_json"}
            if plan is not None:
                row["graph_json"] = measure.graph_json(plan)
                db.execute("INSERT INTO plans(run_id, plan_json) VALUES(?, ?)", (run_id, _clean(plan)))
            _insert(db, "runs", {"id": run_id, "status": "created", "created_at": now, **row}, RUN_COLUMNS)
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
            event = self._event(db, run_id, task_id, kind, dict(data or {}))
            self._fold(db, run_id, event)
            return int(event["seq"])

    @staticmethod
    def _fold(db: sqlite3.Connection, run_id: str, event: dict[str, Any]) -> None:
        """Fold the event just written (as written: redacted) into the run's summary, in the same transaction.
        A run recorded before summaries existed gets one from all its events first."""
        found = db.execute("SELECT summary_json FROM runs WHERE id=?", (run_id,)).fetchone()
        if found is None:
            return
        if found[0] is None:
            summary = summarize(_events(db, run_id))
        else:
            summary = json.loads(found[0])
            fold(summary, event["kind"], event["task_id"], event["ts"], event["data"])
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
    def _event(db: sqlite3.Connection, run_id: str, task_id: str | None, kind: str,
               data: dict[str, Any]) -> dict[str, Any]:
        """Append an event; returns it as written (`seq`, `data` redacted)."""
        ts, raw = time.time(), json.dumps(data, default=str, sort_keys=True)
        text = _clean(raw)
        cur = db.execute("INSERT INTO events(run_id, task_id, ts, kind, data_json) VALUES(?,?,?,?,?)",
                         (run_id, task_id, ts, kind, text))
        # As written: the data itself when nothing was masked (most events), else read back.
        written = json.loads(text) if text != raw or not _plain(data) else data
        return {"seq": int(cur.lastrowid or 0), "kind": kind, "task_id": task_id, "ts": ts, "data": written}

    # -- reads -------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run's row, its plan's JSON (`plan_json`) with it."""
        found = rows(self._db.execute(f"{RUNS_WITH_PLANS} WHERE runs.id=?", (run_id,)))
        return found[0] if found else None

    def runs(self) -> list[dict[str, Any]]:
        return rows(self._db.execute(f"{RUNS_WITH_PLANS} ORDER BY runs.created_at"))

    def tasks(self, run_id: str) -> list[dict[str, Any]]:
        return rows(self._db.execute("SELECT * FROM tasks WHERE run_id=? ORDER BY position", (run_id,)))

    def verified_with_key(self, key: str) -> list[dict[str, Any]]:
        """Verified tasks of any run whose inputs had this key, the newest run's first, with their run's
        `repo_root` (where its evidence is)."""
        found = self._db.execute(
            "SELECT tasks.*, runs.repo_root FROM tasks JOIN runs ON runs.id = tasks.run_id WHERE tasks.input_key=? "
            "AND tasks.state=? AND tasks.commit_sha IS NOT NULL ORDER BY runs.created_at DESC", (key, TaskState.DONE))
        return [dict(r) for r in found]

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
        found = rows(self._db.execute("SELECT * FROM durations ORDER BY finished_at DESC LIMIT ?", (newest,)))
        return found[::-1]

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        return rows(self._db.execute("SELECT * FROM attempts WHERE run_id=? ORDER BY started_at", (run_id,)))

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        return _events(self._db, run_id, after)

    def summary(self, run_id: str) -> dict[str, Any]:
        """The run's summary (see `fold`): kept by `emit`; from the events for a run recorded before that."""
        found = self._db.execute("SELECT summary_json FROM runs WHERE id=?", (run_id,)).fetchone()
        if found is None or found[0] is None:
            return summarize(self.events(run_id))
        return dict(json.loads(found[0]))


def _events(db: sqlite3.Connection, run_id: str, after: int = 0, upto: int | None = None) -> list[dict[str, Any]]:
    found = db.execute("SELECT * FROM events WHERE run_id=? AND seq>? AND seq<=? ORDER BY seq",
                       (run_id, after, upto if upto is not None else 2**63 - 1))
    return [{**dict(r), "data": json.loads(r["data_json"])} for r in found]


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


def _plain(data: dict[str, Any]) -> bool:
    """Whether `data` reads back from its JSON as it is (no values that `default=str` turned into text)."""
    return all(v is None or isinstance(v, (str, int, float, bool)) for v in data.values())


def _clean(value: Any) -> Any:
    """Every text that reaches a row: secrets masked (this is the one place rows are written)."""
    return redact(value) if isinstance(value, str) else value

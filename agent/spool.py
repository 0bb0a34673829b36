"""On-disk spool: every statistics message waits here until the broker confirmed it
(push) or a poller asked for a cursor past it (pull). Bounded: when full, the
oldest messages are dropped and counted."""
import json
import logging
import os
import sqlite3
import threading

from agent.messages import envelope

log = logging.getLogger("agent.spool")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (cursor INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
DROPPED = "dropped"


class Spool:
    """One SQLite file shared by the agent's threads (one lock) and processes (SQLite's lock)."""

    def __init__(self, path, max_messages, server_id):
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.max_messages = max_messages
        self.server_id = server_id
        self.changed = threading.Event()  # set whenever a message is appended
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            self._db.execute(statement)

    def close(self):
        with self._lock:
            self._db.close()

    def _write(self, work):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    @staticmethod
    def _bump(db, name, by=1):
        # No UPSERT: SQLite before 3.24 (still on some supported hosts) lacks it.
        db.execute("INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)", (name,))
        db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (by, name))
        return db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def next_seq(self, kind):
        """The next per-kind message number, persisted so that it survives restarts."""
        return self._write(lambda db: self._bump(db, "seq." + kind))

    def append(self, kind, collected_at, data):
        """Store one message (numbered here) and return it; drops the oldest beyond the bound."""

        def work(db):
            message = envelope(kind, self.server_id, self._bump(db, "seq." + kind), collected_at, data)
            db.execute("INSERT INTO messages (body) VALUES (?)", (json.dumps(message, separators=(",", ":")),))
            excess = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] - self.max_messages
            dropped_total = None
            if excess > 0:
                db.execute(
                    "DELETE FROM messages WHERE cursor IN (SELECT cursor FROM messages ORDER BY cursor LIMIT ?)", (excess,)
                )
                dropped_total = self._bump(db, DROPPED, excess)
            return message, excess, dropped_total

        message, excess, dropped_total = self._write(work)
        if dropped_total is not None:
            log.warning("spool full (%d messages): dropped the %d oldest, %d dropped so far",
                        self.max_messages, excess, dropped_total)
        self.changed.set()
        return message

    def read(self, after=0, limit=100):
        """Up to ``limit`` messages past cursor ``after``, oldest first, as (cursor, body text)."""
        with self._lock:
            return self._db.execute(
                "SELECT cursor, body FROM messages WHERE cursor > ? ORDER BY cursor LIMIT ?", (after, limit)
            ).fetchall()

    def remove(self, cursors):
        if cursors:
            self._write(lambda db: db.executemany("DELETE FROM messages WHERE cursor = ?", [(c,) for c in cursors]))

    def remove_through(self, cursor):
        """Forget everything at or below ``cursor`` (a poller has read it)."""
        self._write(lambda db: db.execute("DELETE FROM messages WHERE cursor <= ?", (cursor,)))

    def last_cursor(self):
        """The highest cursor ever handed out (0 for a new spool)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        return row[0] if row else 0

    def pending(self):
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def dropped(self):
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (DROPPED,)).fetchone()
        return row[0] if row else 0

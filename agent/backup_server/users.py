"""The daemon's own users and what each may do, in its own SQLite database.

Roles: ``append`` (the control plane's: list, read and add objects; delete only its own
locks; never overwrite), ``prune`` (also delete: forget and prune). Passwords are kept as
PBKDF2 hashes; a verified password is remembered in memory as its SHA-256 so that the
many requests of one restic run do not each pay the slow hash.
"""
import hashlib
import hmac
import os
import sqlite3
import threading
import time

ROLES = ("append", "prune")
ITERATIONS = 200000


def _pbkdf2(password, salt):
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS).hex()


class Database:
    """users, the enrollment token's use, object check results and disk crossings."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        os.chmod(path, 0o600)
        self.connection.executescript("""
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, salt TEXT NOT NULL,
                                              password_hash TEXT NOT NULL, created_at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS enrollment (token_hash TEXT PRIMARY KEY, used_at REAL);
            CREATE TABLE IF NOT EXISTS checks (id INTEGER PRIMARY KEY, repository TEXT NOT NULL, checked_at REAL NOT NULL,
                                               objects INTEGER NOT NULL, bytes INTEGER NOT NULL, corrupt TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS disk_events (id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL,
                                                    free_percent REAL NOT NULL);
        """)

    def execute(self, sql, params=()):
        with self.lock:
            return self.connection.execute(sql, params).fetchall()


class Users:
    def __init__(self, database, clock=time.time):
        self.db = database
        self.clock = clock
        self._verified = {}

    def add(self, name, role, password):
        if role not in ROLES:
            raise ValueError("role must be one of %s" % ", ".join(ROLES))
        salt = os.urandom(16)
        self.db.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?, ?)",
                        (name, role, salt.hex(), _pbkdf2(password, salt), self.clock()))
        self._verified.pop(name, None)

    def names(self):
        return {name: role for name, role in self.db.execute("SELECT name, role FROM users ORDER BY name")}

    def authenticate(self, name, password):
        """The user's role, or None when the name or password is wrong."""
        rows = self.db.execute("SELECT role, salt, password_hash FROM users WHERE name = ?", (name,))
        if not rows:
            return None
        role, salt, expected = rows[0]
        quick = hashlib.sha256(("%s\0%s" % (expected, password)).encode()).hexdigest()
        if self._verified.get(name) == quick:
            return role
        if not hmac.compare_digest(_pbkdf2(password, bytes.fromhex(salt)), expected):
            return None
        self._verified[name] = quick
        return role

    def enroll(self, token, token_hash, users):
        """Create the control plane's users once, with the install's enrollment token; False if refused."""
        supplied = hashlib.sha256(token.encode()).hexdigest()
        if not token_hash or not hmac.compare_digest(supplied, token_hash):
            return False
        with self.db.lock:
            row = self.db.connection.execute("SELECT used_at FROM enrollment WHERE token_hash = ?", (token_hash,)).fetchone()
            if row is not None:
                return False
            self.db.connection.execute("INSERT INTO enrollment VALUES (?, ?)", (token_hash, self.clock()))
        for name, role, password in users:
            self.add(name, role, password)
        return True

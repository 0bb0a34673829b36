"""The daemon's HTTP API: restic's REST protocol for the repositories, and /v1 for Steward.

    POST /v1/enroll                        {token, users: [{name, role, password}]} once per install
    GET  /v1/status                        version, disk, repositories, last checks, disk crossings
    POST /v1/repositories/<repo>/check     read every object and compare it with its name
    /<repo>/...                            restic's REST backend (v1 and v2), by the user's role

Every call but enroll needs HTTP basic auth with one of the daemon's users.
"""
import base64
import binascii
import json
import logging
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import VERSION
from .repository import NAME, TYPES, InsufficientStorage, NotFound, Refused

log = logging.getLogger("backup_server")
V2 = "application/vnd.x.restic.rest.v2"
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
MAX_JSON = 64 * 1024


class DiskWatch:
    """Free space of the repositories' disk; a crossing below ``low_percent`` is recorded once,
    and so is the recovery (above it by ``hysteresis_percent``)."""

    def __init__(self, repositories, database, low_percent=10.0, hysteresis_percent=2.0, clock=time.time):
        self.repositories = repositories
        self.db = database
        self.low_percent = low_percent
        self.hysteresis_percent = hysteresis_percent
        self.clock = clock

    def is_low(self):
        rows = self.db.execute("SELECT kind FROM disk_events ORDER BY id DESC LIMIT 1")
        return bool(rows) and rows[0][0] == "low"

    def sample(self):
        total, free = self.repositories.usage()
        percent = 100.0 * free / total if total else 0.0
        low = self.is_low()
        if not low and percent < self.low_percent:
            self.db.execute("INSERT INTO disk_events (at, kind, free_percent) VALUES (?, 'low', ?)", (self.clock(), percent))
            log.warning("disk low: %.1f %% free", percent)
        elif low and percent >= self.low_percent + self.hysteresis_percent:
            self.db.execute("INSERT INTO disk_events (at, kind, free_percent) VALUES (?, 'recovered', ?)",
                            (self.clock(), percent))
        return {"total_bytes": total, "free_bytes": free, "free_percent": round(percent, 2), "low": self.is_low(),
                "low_percent": self.low_percent}

    def events(self, limit=20):
        rows = self.db.execute("SELECT id, at, kind, free_percent FROM disk_events ORDER BY id DESC LIMIT ?", (limit,))
        return [{"id": i, "at": at, "kind": kind, "free_percent": round(p, 2)} for i, at, kind, p in rows]


class Daemon:
    def __init__(self, repositories, users, database, disk, enrollment_token_hash):
        self.repositories = repositories
        self.users = users
        self.db = database
        self.disk = disk
        self.enrollment_token_hash = enrollment_token_hash

    def status(self):
        checks = {}
        for repository, checked_at, objects, size, corrupt in self.db.execute(
                "SELECT repository, checked_at, objects, bytes, corrupt FROM checks WHERE id IN "
                "(SELECT max(id) FROM checks GROUP BY repository)"):
            checks[repository] = {"checked_at": checked_at, "objects": objects, "bytes": size, "corrupt": json.loads(corrupt)}
        return {"version": VERSION, "disk": self.disk.sample(), "disk_events": self.disk.events(),
                "repositories": self.repositories.names(), "checks": checks, "users": self.users.names()}

    def check(self, repository):
        result = self.repositories.check(repository)
        self.db.execute("INSERT INTO checks (repository, checked_at, objects, bytes, corrupt) VALUES (?, ?, ?, ?, ?)",
                        (repository, time.time(), result["objects"], result["bytes"], json.dumps(result["corrupt"])))
        return dict(result, repository=repository)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "steward-backup-server"
    sys_version = ""

    @property
    def daemon(self):
        return self.server.daemon

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    # -- answers -------------------------------------------------------------
    def _send(self, status, body=b"", content_type="application/octet-stream", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status, value, content_type="application/json"):
        self._send(status, json.dumps(value).encode(), content_type)

    def _error(self, status, error, message):
        self._json(status, {"error": error, "message": message})

    def _drain(self):
        """Read and drop a body we refuse, so the connection stays usable."""
        if self._consumed:
            return
        self._consumed = True
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            remaining -= len(self.rfile.read(min(remaining, 1 << 20)) or b"x" * remaining)

    def _role(self):
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return self.daemon.users.authenticate(name, password)
        return None

    def _dispatch(self):
        self._consumed = False
        try:
            path = self.path.split("?", 1)[0]
            parts = [p for p in path.split("/") if p]
            if parts[:1] == ["v1"]:
                return self._steward(parts[1:])
            role = self._role()
            if role is None:
                self._drain()
                return self._send(401, b"", headers=[("WWW-Authenticate", 'Basic realm="steward-backup-server"')])
            return self._restic(role, parts)
        except NotFound as exc:
            self._drain()
            self._error(404, "not_found", "no such object: %s" % exc)
        except Refused as exc:
            self._drain()
            self._error(exc.status, "refused", str(exc))
        except InsufficientStorage as exc:
            self._drain()
            self._error(507, "insufficient_storage", str(exc))

    do_GET = do_HEAD = do_POST = do_DELETE = _dispatch

    # -- /v1: Steward's calls --------------------------------------------------
    def _read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_JSON:
            self._drain()
            raise Refused("the body is larger than %d bytes" % MAX_JSON, 413)
        self._consumed = True
        try:
            value = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise Refused("the body is not JSON", 400) from None
        if not isinstance(value, dict):
            raise Refused("the body must be a JSON object", 400)
        return value

    def _steward(self, parts):
        if parts == ["enroll"] and self.command == "POST":
            body = self._read_json()
            users = body.get("users")
            if not isinstance(body.get("token"), str) or not isinstance(users, list) or not all(
                    isinstance(u, dict) and isinstance(u.get("name"), str) and u.get("role") in ("append", "prune")
                    and isinstance(u.get("password"), str) and len(u["password"]) >= 16 for u in users):
                raise Refused("enroll wants {token, users: [{name, role: append|prune, password (16+ chars)}]}", 400)
            if not self.daemon.users.enroll(body["token"], self.daemon.enrollment_token_hash,
                                            [(u["name"], u["role"], u["password"]) for u in users]):
                return self._error(403, "refused", "the enrollment token is wrong or was used already")
            return self._json(200, {"users": self.daemon.users.names()})
        role = self._role()
        if role is None:
            self._drain()
            return self._error(401, "unauthorized", "HTTP basic auth with a user of this daemon is required")
        if parts == ["status"] and self.command in ("GET", "HEAD"):
            return self._json(200, self.daemon.status())
        if len(parts) == 3 and parts[0] == "repositories" and parts[2] == "check" and self.command == "POST":
            self._drain()
            self.daemon.repositories.path(parts[1])
            if parts[1] not in self.daemon.repositories.names():
                raise NotFound(parts[1])
            return self._json(200, self.daemon.check(parts[1]))
        self._drain()
        self._error(404, "not_found", "no such call: %s %s" % (self.command, self.path))

    # -- restic's REST protocol -----------------------------------------------------
    def _restic(self, role, parts):
        repositories = self.daemon.repositories
        if not parts:
            raise NotFound("/")
        repository, rest = parts[0], parts[1:]
        if not rest:
            if self.command == "POST" and "create=true" in self.path:
                repositories.create(repository)
                return self._send(200)
            raise NotFound(repository)
        kind = rest[0]
        name = rest[1] if len(rest) > 1 else None
        if kind == "config" and len(rest) == 1:
            return self._object(role, repository, "config", None)
        if kind not in TYPES or len(rest) > 2:
            raise NotFound(self.path)
        if name is None:
            if self.command not in ("GET", "HEAD"):
                raise Refused("%s on a list" % self.command, 405)
            items = repositories.list(repository, kind)
            if V2 in self.headers.get("Accept", ""):
                return self._json(200, items, V2)
            return self._json(200, [item["name"] for item in items])
        if not NAME.match(name):
            raise NotFound(name)
        return self._object(role, repository, kind, name)

    def _object(self, role, repository, kind, name):
        repositories = self.daemon.repositories
        if self.command == "POST":
            length = self.headers.get("Content-Length")
            if length is None:
                raise Refused("Content-Length is required", 411)
            target = repositories.admit(repository, kind, name, int(length))
            self._consumed = True
            repositories.save(target, kind, name, self.rfile, int(length))
            return self._send(200)
        if self.command == "DELETE":
            self._drain()
            repositories.delete(repository, kind, name, role)
            return self._send(200)
        path = repositories.object_path(repository, kind, name)
        try:
            handle = open(path, "rb")
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(name) from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            start, end, status = 0, size, 200
            match = RANGE.match(self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                end = min(size, int(match.group(2)) + 1) if match.group(2) else size
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(max(0, end - start)))
            if status == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size))
            self.end_headers()
            if self.command == "HEAD":
                return None
            handle.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = handle.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)
        return None


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, daemon):
        self.daemon = daemon
        super().__init__(address, Handler)


def watch_disk(disk, interval, stopping):
    while not stopping.wait(interval):
        try:
            disk.sample()
        except OSError:
            log.exception("could not read the disk's free space")


def start_watch(disk, interval):
    stopping = threading.Event()
    thread = threading.Thread(target=watch_disk, args=(disk, interval, stopping), daemon=True, name="disk-watch")
    thread.start()
    return stopping

"""restic, run on the control plane against a backup server's daemon, and the daemon's own API.

Secrets go to restic in its environment (the repository URL with the daemon user's password,
RESTIC_PASSWORD with the repository secret), never in its arguments, so no process list shows them.
"""
import json
import os
import subprocess
import tempfile

import requests

from services.backup.exceptions import EngineFailed
from shared.errors import BackupServerFailed

STDIN_FILENAME = "steward.dump"  # a backup from before parts: one pg_dump archive
PARTS_FILENAME = "steward.parts"  # a backup's header, schema and data (services/backup/dump.py)
RESTIC_TIMEOUT = 3600


class Repository:
    """One restic repository on one daemon, as one of its users."""

    def __init__(self, url, repository, user, password, secret, cache_dir=None):
        self.url = url.rstrip("/")
        self.repository = repository
        self.user = user
        self.password = password
        self.secret = secret
        self.cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "steward-restic-cache")

    def environment(self):
        scheme, _, rest = self.url.partition("://")
        return dict(os.environ, RESTIC_REPOSITORY=f"rest:{scheme}://{self.user}:{self.password}@{rest}/{self.repository}/",
                    RESTIC_PASSWORD=self.secret, RESTIC_CACHE_DIR=self.cache_dir, RESTIC_PROGRESS_FPS="0.1")

    def run(self, *argv, stdin=None, timeout=RESTIC_TIMEOUT):
        done = subprocess.run(["restic", *argv], env=self.environment(), stdin=stdin, capture_output=True,
                              timeout=timeout)
        if done.returncode:
            raise EngineFailed(_said(done.stderr))
        return done.stdout

    def init(self):
        self.run("init")

    def snapshots(self):
        return json.loads(self.run("snapshots", "--json") or b"[]")

    def backup(self, stdin, taken_at=None, tags=(), filename=STDIN_FILENAME, feed=None):
        """Back up what ``stdin`` (a file or pipe) holds as ``filename``; ``feed()``, when given, runs while restic
        reads (it fills the pipe). Returns restic's summary (snapshot_id, data_added, ...)."""
        argv = ["backup", "--json", "--quiet", "--stdin", "--stdin-filename", filename]
        if taken_at is not None:
            argv += ["--time", taken_at.strftime("%Y-%m-%d %H:%M:%S")]
        for tag in tags:
            argv += ["--tag", tag]
        process = subprocess.Popen(["restic", *argv], env=self.environment(), stdin=stdin, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        try:
            if feed is not None:
                feed()
            out, err = process.communicate(timeout=RESTIC_TIMEOUT)
        except BaseException as exc:
            stopped = process.poll()
            process.kill()
            err = process.communicate()[1]
            if stopped and isinstance(exc, EngineFailed):  # restic stopped first: its reason, not the broken pipe's
                raise EngineFailed(_said(err)) from None
            raise
        if process.returncode:
            raise EngineFailed(_said(err))
        for line in reversed(out.splitlines()):
            message = json.loads(line)
            if message.get("message_type") == "summary":
                return message
        raise EngineFailed("restic backup printed no summary")

    def dump(self, snapshot_id, stdout, filename=STDIN_FILENAME):
        """Write the snapshot's ``filename`` to ``stdout`` (a file or pipe); restic checks every blob it reads."""
        process = subprocess.Popen(["restic", "dump", snapshot_id, filename], env=self.environment(),
                                   stdout=stdout, stderr=subprocess.PIPE)
        return process

    def forget(self, snapshot_ids, prune=True):
        if snapshot_ids:
            self.run("forget", *(["--prune"] if prune else []), *snapshot_ids)

    def check(self):
        """restic's own check, reading every pack: proves the data decrypts and hashes as recorded."""
        return self.run("check", "--read-data").decode(errors="replace")


def _said(stderr):
    text = stderr.decode(errors="replace").strip()
    lines = [line for line in text.splitlines() if "retrying after" not in line]
    return "\n".join(lines[-12:]) or "restic failed without a message"


class DaemonClient:
    """The backup-server daemon's /v1 API (agent/backup_server/server.py)."""

    def __init__(self, url, auth=None, timeout=30):
        self.url = url.rstrip("/")
        self.auth = auth
        self.timeout = timeout

    def _call(self, method, path, timeout=None, **kwargs):
        try:
            answer = requests.request(method, f"{self.url}{path}", auth=self.auth, timeout=timeout or self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise BackupServerFailed(f"the backup server at {self.url} does not answer: {exc.__class__.__name__}") from None
        if answer.status_code >= 400:
            try:
                message = answer.json().get("message")
            except ValueError:
                message = answer.text[:200]
            raise BackupServerFailed(f"the backup server refused {method} {path} ({answer.status_code}): {message}",
                                     {"status": answer.status_code})
        return answer.json()

    def enroll(self, token, users):
        return self._call("POST", "/v1/enroll", json={"token": token, "users": users})

    def status(self):
        return self._call("GET", "/v1/status")

    def check(self, repository):
        return self._call("POST", f"/v1/repositories/{repository}/check", timeout=3600)

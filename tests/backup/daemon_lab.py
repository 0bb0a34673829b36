"""A backup-server daemon run as its own process on 127.0.0.1, and restic pointed at it."""
import contextlib
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.crypto import backup_enrollment_token
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


class Daemon:
    def __init__(self, directory, **config):
        self.directory = Path(directory)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.users = {"steward": ("append", secrets.token_hex(16)), "steward-prune": ("prune", secrets.token_hex(16))}
        self.config = dict({"listen": "127.0.0.1", "port": self.port, "data_dir": str(self.directory / "data"),
                            "enrollment_token_sha256": hashlib.sha256(self.token.encode()).hexdigest(),
                            "reserve_bytes": 0, "disk_interval_seconds": 1}, **config)
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        path = self.directory / "backup-server.json"
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.config))
        self.process = subprocess.Popen([sys.executable, "-m", "agent.backup_server", "--config", str(path)], cwd=ROOT,
                                        stdout=open(self.directory / "daemon.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/v1/status", timeout=2)
                return self
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.directory / "daemon.log").read_text())
                time.sleep(0.1)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def enroll(self):
        users = [{"name": name, "role": role, "password": password} for name, (role, password) in self.users.items()]
        return requests.post(f"{self.url}/v1/enroll", json={"token": self.token, "users": users}, timeout=10)

    def auth(self, user="steward"):
        return user, self.users[user][1]

    def repository_dir(self, repository):
        return Path(self.config["data_dir"]) / "repositories" / repository

    def restic(self, *argv, user="steward", repository="steward", password="repository-secret", stdin=None, check=True,
               local=False):
        """restic through the daemon as one of this lab's users, or (``local``) on the host's own files."""
        name, secret = self.auth(user)
        url = f"rest:http://{name}:{secret}@127.0.0.1:{self.port}/{repository}/"
        env = dict(os.environ, RESTIC_REPOSITORY=str(self.repository_dir(repository)) if local else url,
                   RESTIC_PASSWORD=password, RESTIC_CACHE_DIR=str(self.directory / "cache"))
        done = subprocess.run(["restic", *argv], env=env, input=stdin, capture_output=True, timeout=300)
        if check and done.returncode:
            raise RuntimeError(f"restic {' '.join(argv)}: {done.stderr.decode()}")
        return done


@contextlib.contextmanager
def enrolled_daemon(secret_key, server_id, directory, **config):
    """A daemon as the setup bundle of managed server ``server_id`` starts it: ready for the backup service to enroll."""
    token = backup_enrollment_token(secret_key, server_id)
    daemon = Daemon(directory, enrollment_token_sha256=hashlib.sha256(token.encode()).hexdigest(), **config).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def drop_databases(database_url, prefix):
    """Drop every database whose name starts with ``prefix`` (restores a test made)."""
    engine = create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            names = connection.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                                       {"p": prefix.replace("_", r"\_") + "%"}).scalars().all()
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()

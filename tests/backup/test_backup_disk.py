"""A backup server's disk on a small filesystem of its own (tmpfs): its heartbeat reports the free space,
each crossing below the threshold is reported once (backup_disk_low), again only after it recovered
and crossed again, and a backup that would not fit fails before it starts, saying why."""
import contextlib
import os
import subprocess

import pytest
from sqlalchemy import text

from tests.backup.conftest import BACKUP_PASSWORD, set_backup_password
from tests.backup.daemon_lab import enrolled_daemon
from tests.backup.test_backup_service import wait_task
from tests.backup.test_retention_schedules import runner_of

STORE_BYTES = 4 << 20


@contextlib.contextmanager
def small_filesystem(path):
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STORE_BYTES}", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path, leave_bytes):
    """A file that leaves about ``leave_bytes`` free on ``path``'s filesystem."""
    ballast = path / "ballast"
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize + (ballast.stat().st_size if ballast.exists() else 0)
    ballast.write_bytes(b"\0" * max(free - leave_bytes, 0))


def reported(engine):
    with engine.connect() as connection:
        return connection.execute(text("SELECT body FROM backup.outbox WHERE event = 'backup_disk_low' "
                                       "ORDER BY sequence")).scalars().all()


def test_each_crossing_is_reported_once_and_a_backup_that_cannot_fit_fails_early(
        rpc, admin, settings, tmp_path, backup_service, engine):
    set_backup_password(rpc, admin, BACKUP_PASSWORD)
    server = rpc.call("inventory", "create_server", admin, {"name": "backup-small", "address": "127.0.0.1",
                                                            "os": "ubuntu", "components": ["backup"],
                                                            "ssh_password": "unused"})
    runner = runner_of(backup_service)
    with small_filesystem(tmp_path / "daemon" / "data") as store, \
            enrolled_daemon(settings.secret_key, server["id"], tmp_path / "daemon", disk_low_percent=50.0) as daemon:
        registered = rpc.call("backup", "create_backup_server", admin, {"server_id": server["id"], "port": daemon.port})
        runner.refresh_servers()
        shown = rpc.call("backup", "get_backup_server", admin, registered["id"])
        assert shown["disk"]["total_bytes"] == STORE_BYTES and shown["disk"]["low"] is False
        assert reported(engine) == []

        fill(store, STORE_BYTES // 4)  # 25 % free: below 50 %
        runner.refresh_servers()
        runner.refresh_servers()  # still low: no second report
        [first] = reported(engine)
        assert first["backup_server_name"] == "backup-small" and first["free_percent"] < 50
        shown = rpc.call("backup", "get_backup_server", admin, registered["id"])
        assert shown["disk"]["low"] is True and shown["disk"]["free_bytes"] < STORE_BYTES // 2

        fill(store, STORE_BYTES)  # recovered (above 50 % + the daemon's 2 % hysteresis) ...
        runner.refresh_servers()
        assert len(reported(engine)) == 1
        fill(store, 64 << 10)  # ... and crossed again: a second report
        runner.refresh_servers()
        assert len(reported(engine)) == 2

        task, log = wait_task(rpc, admin, rpc.call("backup", "run_backup", admin,
                                                   {"backup_server_id": registered["id"]}))
        assert task["state"] == "failed" and "too full" in task["error"] and "bytes needed" in task["error"], task
        assert [(s["name"], s["state"]) for s in log["steps"]] == [("key", "succeeded"), ("check_server", "failed")]
        assert not daemon.repository_dir("steward").exists()  # nothing was sent
        assert rpc.call("backup", "list_backups", admin, {}) == []

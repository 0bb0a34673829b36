"""The backup-server daemon as its own process, with the real restic against it: its users and
what each may do, objects checked against their names, and its disk watch."""
import json

import pytest
import requests

from agent.backup_server.server import DiskWatch
from agent.backup_server.users import Database
from tests.backup.daemon_lab import Daemon


@pytest.fixture
def daemon(tmp_path):
    daemon = Daemon(tmp_path).start()
    assert daemon.enroll().status_code == 200
    yield daemon
    daemon.stop()


def snapshot_ids(daemon):
    return [s["id"] for s in json.loads(daemon.restic("snapshots", "--json").stdout)]


def test_enrollment_takes_the_install_token_once(tmp_path):
    daemon = Daemon(tmp_path).start()
    try:
        wrong = requests.post(f"{daemon.url}/v1/enroll", json={"token": "nope", "users": []}, timeout=10)
        assert wrong.status_code == 403
        assert requests.get(f"{daemon.url}/v1/status", auth=daemon.auth(), timeout=10).status_code == 401
        assert daemon.enroll().json()["users"] == {"steward": "append", "steward-prune": "prune"}
        assert daemon.enroll().status_code == 403  # used: nobody can add users with it again
        assert requests.get(f"{daemon.url}/v1/status", auth=daemon.auth(), timeout=10).status_code == 200
        assert requests.get(f"{daemon.url}/v1/status", auth=("steward", "wrong-password"), timeout=10).status_code == 401
    finally:
        daemon.stop()


def test_the_append_user_adds_and_reads_but_cannot_delete_or_overwrite(daemon):
    daemon.restic("init")
    daemon.restic("backup", "--stdin", "--stdin-filename", "steward.dump", stdin=b"first dump\n" * 1000)
    [snapshot] = snapshot_ids(daemon)
    assert daemon.restic("dump", snapshot, "steward.dump").stdout == b"first dump\n" * 1000

    [full_id] = [p.name for p in (daemon.repository_dir("steward") / "snapshots").iterdir()]
    url = f"{daemon.url}/steward/snapshots/{full_id}"
    refused = requests.delete(url, auth=daemon.auth(), timeout=10)
    assert refused.status_code == 403 and "may not delete" in refused.json()["message"]
    content = requests.get(url, auth=daemon.auth(), timeout=10).content
    overwrite = requests.post(url, data=content, auth=daemon.auth("steward-prune"), timeout=10)
    assert overwrite.status_code == 403  # never overwritten, whoever asks
    assert snapshot_ids(daemon) == [snapshot]

    daemon.restic("forget", "--prune", snapshot, user="steward-prune")
    assert snapshot_ids(daemon) == []


def test_an_object_whose_content_is_not_its_name_is_refused(daemon):
    daemon.restic("init")
    name = "0" * 64
    answer = requests.post(f"{daemon.url}/steward/data/{name}", data=b"not that", auth=daemon.auth(), timeout=10)
    assert answer.status_code == 400
    assert not (daemon.repository_dir("steward") / "data" / "00" / name).exists()


def test_the_object_check_finds_one_flipped_byte_without_any_key(daemon):
    daemon.restic("init")
    daemon.restic("backup", "--stdin", "--stdin-filename", "steward.dump", stdin=bytes(range(256)) * 4000)
    check = f"{daemon.url}/v1/repositories/steward/check"
    clean = requests.post(check, auth=daemon.auth(), timeout=60).json()
    assert clean["corrupt"] == [] and clean["objects"] >= 4

    pack = next(p for p in (daemon.repository_dir("steward") / "data").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    found = requests.post(check, auth=daemon.auth(), timeout=60).json()
    assert found["corrupt"] == [f"data/{pack.name}"]
    status = requests.get(f"{daemon.url}/v1/status", auth=daemon.auth(), timeout=10).json()
    assert status["checks"]["steward"]["corrupt"] == [f"data/{pack.name}"]


def test_a_backup_that_does_not_fit_fails_early_with_the_reason(tmp_path):
    daemon = Daemon(tmp_path, reserve_bytes=1 << 62).start()
    try:
        daemon.enroll()
        failed = daemon.restic("init", check=False)
        assert failed.returncode != 0
        assert b"507" in failed.stderr
    finally:
        daemon.stop()


class FakeDisk:
    """Repositories' usage() with the free space a test sets."""

    def __init__(self):
        self.free_percent = 50.0

    def usage(self):
        return 1000, int(10 * self.free_percent)


def test_the_disk_watch_records_each_crossing_once(tmp_path):
    disk = FakeDisk()
    watch = DiskWatch(disk, Database(str(tmp_path / "db.sqlite3")), low_percent=10.0, hysteresis_percent=2.0)
    seen = []
    for free in (50, 9, 8, 5, 11, 13, 9.5):
        disk.free_percent = free
        seen.append(watch.sample()["low"])
    assert seen == [False, True, True, True, True, False, True]
    assert [e["kind"] for e in reversed(watch.events())] == ["low", "recovered", "low"]

"""Backups through the backup service, as the API's calls make them: run, list, verify (and find a
flipped byte), the key that never reaches the backup server, and restore into a scratch database."""
import contextlib
import json
import subprocess

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared.crypto import SecretBox
from shared.errors import BackupPasswordNotSet, WrongBackupPassword
from tests.backup.conftest import BACKUP_PASSWORD, set_backup_password
from tests.waiting import wait_for


def wait_task(rpc, admin, task, timeout=120):
    done = wait_for(lambda: (t := rpc.call("backup", "get_task", admin, task["id"]))["state"] in ("succeeded", "failed") and t,
                    timeout=timeout, interval=0.2, what=f"task {task['id']}")
    return done, rpc.call("backup", "task_log", admin, task["id"])


def run_backup(rpc, admin, backup_server_id):
    task, log = wait_task(rpc, admin, rpc.call("backup", "run_backup", admin, {"backup_server_id": backup_server_id}))
    assert task["state"] == "succeeded", (task["error"], log)
    return task, log


def test_a_backup_is_listed_and_the_backup_server_holds_only_ciphertext(rpc, admin, backup_server, backup_events):
    registered, daemon = backup_server
    assert registered["backups"] == 0 and registered["disk"]["free_bytes"] is None
    task, log = run_backup(rpc, admin, registered["id"])
    assert [s["name"] for s in log["steps"]] == ["key", "check_server", "dump_and_store", "record"]
    [backup] = rpc.call("backup", "list_backups", admin, {})
    assert backup["task_id"] == task["id"] and backup["verification"] == "unverified"
    # Every service's schema (monitoring-ingest's is "monitoring"): the ones with an alembic version table.
    assert set(backup["schemas"]) == {"inventory", "provisioner", "updater", "notifier", "backup", "monitoring"}
    assert backup["size_bytes"] > 10000 and backup["added_bytes"] > 0
    shown = rpc.call("backup", "get_backup_server", admin, registered["id"])
    assert shown["backups"] == 1 and shown["last_backup_at"] == backup["taken_at"] and shown["disk"]["free_bytes"] > 0
    events = backup_events.until("backup_finished")
    assert [name for name, _ in events] == ["backup_finished"]
    assert events[0][1]["backup_id"] == backup["id"] and events[0][1]["backup_server_name"] == "backup-1"

    # Every file the backup server holds is ciphertext: no row of the dump shows in them.
    stored = b"".join(p.read_bytes() for p in daemon.directory.rglob("*") if p.is_file() and "cache" not in p.parts)
    for plain in (b"backup-1", b"inventory", b"PGDMP", BACKUP_PASSWORD.encode()):
        assert plain not in stored
    # The engine itself cannot open the repository on the host without the key, not even with the
    # managed-backup password (restic's key there is wrapped by a random secret only the control plane has).
    refused = daemon.restic("snapshots", password=BACKUP_PASSWORD, local=True, check=False)
    assert refused.returncode != 0 and b"wrong password" in refused.stderr


def test_verification_restores_to_scratch_and_finds_one_flipped_byte(rpc, admin, backup_server, backup_events):
    registered, daemon = backup_server
    run_backup(rpc, admin, registered["id"])
    [backup] = rpc.call("backup", "list_backups", admin, {})
    task, log = wait_task(rpc, admin, rpc.call("backup", "verify_backup", admin, backup["id"]))
    assert task["state"] == "succeeded", log
    checked = rpc.call("backup", "get_backup", admin, backup["id"])
    assert checked["verification"] == "ok" and "inventory" in checked["verification_detail"], checked["verification_detail"]
    assert "restored into steward_verify_" in checked["verification_detail"]

    pack = max((p for p in (daemon.repository_dir("steward") / "data").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    task, log = wait_task(rpc, admin, rpc.call("backup", "verify_backup", admin, backup["id"]))
    bad = rpc.call("backup", "get_backup", admin, backup["id"])
    assert bad["verification"] == "bad"
    assert f"data/{pack.name}" in bad["verification_detail"] and "restore into a scratch database failed" in bad["verification_detail"]
    verified = [p for name, p in backup_events() if name == "backup_verified"]
    assert verified[0]["error"] is None and verified[1]["error"] == bad["verification_detail"]
    listed = rpc.call("backup", "get_backup_server", admin, registered["id"])
    assert listed["last_verification"] == "bad"


def test_the_password_is_needed_and_a_change_rewraps_the_key(rpc, admin, backup_server, engine):
    registered, daemon = backup_server
    with engine.connect() as connection:
        before = connection.execute(text("SELECT wrapped_secret FROM backup.backup_key")).scalar()
    set_backup_password(rpc, admin, "a new password, just as long")
    run_backup(rpc, admin, registered["id"])  # the old backups' key opens with the new password
    with engine.connect() as connection:
        after = connection.execute(text("SELECT wrapped_secret FROM backup.backup_key")).scalar()
    assert after != before and BACKUP_PASSWORD not in after
    assert len(rpc.call("backup", "list_backups", admin, {})) == 1

    set_backup_password(rpc, admin, None)
    with pytest.raises(BackupPasswordNotSet):
        rpc.call("backup", "run_backup", admin, {"backup_server_id": registered["id"]})
    # A key no password opens (the row tampered with): a clear error, nothing queued.
    set_backup_password(rpc, admin, "a new password, just as long")
    with engine.begin() as connection:
        connection.execute(text("UPDATE backup.backup_key SET wrapped_secret = :w"),
                           {"w": json.dumps(dict(json.loads(after), ciphertext="AAAA" + json.loads(after)["ciphertext"][4:]))})
    with pytest.raises(WrongBackupPassword):
        rpc.call("backup", "run_backup", admin, {"backup_server_id": registered["id"]})


def test_delete_100_servers_then_restore_brings_them_back_with_usable_credentials(rpc, admin, backup_server, settings,
                                                                                 backup_events):
    registered, daemon = backup_server
    created = [rpc.call("inventory", "create_server", admin, {"name": f"dns-{i}", "address": f"198.18.7.{i}", "os": "ubuntu",
                                                              "ssh_password": f"password-{i}"}) for i in range(100)]
    run_backup(rpc, admin, registered["id"])
    for server in created:
        rpc.call("inventory", "delete_server", admin, server["id"])
    [backup] = rpc.call("backup", "list_backups", admin, {})
    scratch = f"{make_url(settings.database_url).database}_restored"
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", scratch], check=True)
    task, log = wait_task(rpc, admin, rpc.call("backup", "restore_backup", admin, backup["id"], {"into": scratch}))
    assert task["state"] == "succeeded", log
    assert "inventory" in log["steps"][0]["output"]
    [said] = [p for name, p in backup_events.until("backup_restored") if name == "backup_restored"]
    assert (said["task_id"], said["backup_id"], said["into"], said["state"]) == (task["id"], backup["id"], scratch,
                                                                                 "succeeded")
    restored = create_engine(make_url(settings.database_url).set(database=scratch))
    try:
        with restored.connect() as connection:
            rows = connection.execute(text("SELECT name, ssh_password_sealed FROM inventory.servers "
                                           "WHERE name LIKE 'dns-%'")).all()
    finally:
        restored.dispose()
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", scratch], check=True)
    box = SecretBox(settings.secret_key)
    assert sorted((name, box.open(sealed)) for name, sealed in rows) == sorted(
        (f"dns-{i}", f"password-{i}") for i in range(100))


@contextlib.contextmanager
def backup_in_its_dump(rpc, admin, engine, backup_server_id):
    """A backup run caught in its dump_and_store step (a ballast table makes the dump take seconds): its task.
    The ballast goes on the way out."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE inventory.ballast AS SELECT i, md5(i::text) AS filler "
                                "FROM generate_series(1, 1500000) AS i"))
    try:
        task = rpc.call("backup", "run_backup", admin, {"backup_server_id": backup_server_id})
        wait_for(lambda: rpc.call("backup", "get_task", admin, task["id"])["current_step"] == "dump_and_store",
                 timeout=60, interval=0.01, what="the dump to start")
        yield task
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE inventory.ballast"))


def test_a_backup_cut_half_way_lists_nothing_and_the_next_run_succeeds(rpc, admin, backup_server, backup_service,
                                                                       start_service, tmp_path, engine):
    from services.backup.service import BackupService

    registered, _ = backup_server
    with backup_in_its_dump(rpc, admin, engine, registered["id"]) as task:
        backup_service.stop()  # SIGTERM's path: the replica stops its running tasks and fails them
    start_service(BackupService, {"backup": {"restic_cache_dir": str(tmp_path / "cache-2"), "pool_size": 2},
                                  "database": {"pool_size": 2}})
    cut = rpc.call("backup", "get_task", admin, task["id"])
    assert cut["state"] == "failed" and "was stopped" in cut["error"]
    assert rpc.call("backup", "list_backups", admin, {}) == []
    run_backup(rpc, admin, registered["id"])
    assert len(rpc.call("backup", "list_backups", admin, {})) == 1

"""Backup tasks on the shared task runner (shared/task_runner.py): claimed under a replica's lease, a dead
replica's tasks failed by the living, events written with the task's end (one end, one event), and
the creating calls answering a repeat of their Idempotency-Key with their first answer."""
import uuid

import pytest
from sqlalchemy import text

from shared.errors import IdempotencyKeyReused
from tests.backup.conftest import BACKUP_PASSWORD, set_backup_password
from tests.backup.daemon_lab import enrolled_daemon
from tests.backup.test_backup_service import backup_in_its_dump, run_backup, wait_task
from tests.waiting import wait_for


def _scalar(engine, statement, **params):
    with engine.connect() as connection:
        return connection.execute(text(statement), params).scalar()


def test_a_dead_replicas_backup_task_is_failed_and_the_living_holds_a_lease(rpc, admin, backup_server, engine):
    registered, _ = backup_server
    # A replica that crashed mid-backup: its task running, its lease gone.
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO backup.tasks (id, kind, server_id, server_name, state, step_index, step_count, params, "
            "claimed_by, created_at, started_at) VALUES (:id, 'backup', :server_id, 'backup-1', 'running', 1, 4, "
            "CAST(:params AS jsonb), 'gone-replica', now(), now())"),
            {"id": "d" * 32, "server_id": registered["server_id"],
             "params": f'{{"backup_server_id": {registered["id"]}}}'})
    failed = wait_for(lambda: (t := rpc.call("backup", "get_task", admin, "d" * 32))["state"] == "failed" and t,
                      timeout=60, interval=0.2, what="the dead replica's task to be failed")
    assert failed["error"] == "interrupted: the backup replica running it stopped"
    assert _scalar(engine, "SELECT count(*) FROM backup.leases WHERE name LIKE 'replica:%' AND expires_at > now()") >= 1
    # The backup server is free again, and the living replica's tasks show in the one task list.
    task, _ = run_backup(rpc, admin, registered["id"])
    listed = rpc.call("backup", "list_tasks", admin, {"kind": "backup"})
    assert {t["id"] for t in listed["items"]} == {task["id"], "d" * 32} and listed["total"] == 2


def test_a_backup_task_ended_by_another_writes_no_backup_finished(rpc, admin, backup_server, engine):
    """The event commits with the task's end: a replica whose task another ended (its lease lapsed) says nothing."""
    registered, _ = backup_server
    with backup_in_its_dump(rpc, admin, engine, registered["id"]) as task:
        with engine.begin() as connection:  # as a replica that found this one's lease expired does
            connection.execute(text("UPDATE backup.tasks SET state = 'failed', error = 'interrupted: test', "
                                    "finished_at = now() WHERE id = :id"), {"id": task["id"]})
        wait_for(lambda: rpc.call("backup", "task_log", admin, task["id"])["steps"][-1]["name"] == "record"
                 and rpc.call("backup", "task_log", admin, task["id"])["steps"][-1]["state"] != "running",
                 timeout=120, interval=0.2, what="the run to reach its end")
    ended = rpc.call("backup", "get_task", admin, task["id"])
    assert ended["state"] == "failed" and ended["error"] == "interrupted: test"
    assert _scalar(engine, "SELECT count(*) FROM backup.outbox WHERE event = 'backup_finished'") == 0
    # A backup that ends as its own replica's writes its event with the end.
    task, _ = run_backup(rpc, admin, registered["id"])
    wait_for(lambda: _scalar(engine, "SELECT count(*) FROM backup.outbox WHERE event = 'backup_finished' "
                                     "AND body->>'backup_server_id' = :id", id=str(registered["id"])) == 1,
             timeout=30, what="backup_finished in the outbox")


def test_a_repeated_create_with_its_key_gets_its_first_task(rpc, admin, backup_server, engine):
    registered, _ = backup_server
    key = str(uuid.uuid4())
    body = {"backup_server_id": registered["id"]}
    first = rpc.request("backup", "run_backup", (admin, body), idempotency_key=key)
    again = rpc.request("backup", "run_backup", (admin, body), idempotency_key=key)
    assert again == first
    wait_task(rpc, admin, first)
    assert _scalar(engine, "SELECT count(*) FROM backup.tasks WHERE kind = 'backup'") == 1
    with pytest.raises(IdempotencyKeyReused):
        rpc.request("backup", "run_backup", (admin, {"backup_server_id": registered["id"] + 1}), idempotency_key=key)

    [backup] = rpc.call("backup", "list_backups", admin, {})
    key = str(uuid.uuid4())
    first = rpc.request("backup", "verify_backup", (admin, backup["id"]), idempotency_key=key)
    assert rpc.request("backup", "verify_backup", (admin, backup["id"]), idempotency_key=key) == first
    wait_task(rpc, admin, first)
    assert _scalar(engine, "SELECT count(*) FROM backup.tasks") == 2


def test_a_repeated_registration_with_its_key_enrolls_once(rpc, admin, settings, tmp_path, backup_service):
    set_backup_password(rpc, admin, BACKUP_PASSWORD)
    server = rpc.call("inventory", "create_server", admin, {"name": "backup-2", "address": "127.0.0.1", "os": "ubuntu",
                                                            "components": ["backup"], "ssh_password": "unused"})
    key = str(uuid.uuid4())
    with enrolled_daemon(settings.secret_key, server["id"], tmp_path / "daemon") as daemon:
        body = {"server_id": server["id"], "port": daemon.port}
        first = rpc.request("backup", "create_backup_server", (admin, body), idempotency_key=key)
        # The daemon's enrollment token is spent: only the kept answer can answer this repeat.
        assert rpc.request("backup", "create_backup_server", (admin, body), idempotency_key=key) == first
    assert [s["id"] for s in rpc.call("backup", "list_backup_servers", admin)] == [first["id"]]

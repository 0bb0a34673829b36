"""Backup tasks on the shared task runner (shared/task_runner.py): claimed under a replica's lease, a dead
replica's tasks failed by the living, what a task made written with its end and its event (one end, one
event, whatever ended it), a backup cancelled in its dump, and the creating calls answering a repeat of
their Idempotency-Key with their first answer."""
import json
import os
import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.errors import IdempotencyKeyReused
from tests.backup.conftest import BACKUP_PASSWORD, set_backup_password
from tests.backup.daemon_lab import enrolled_daemon
from tests.backup.test_backup_cli import steward
from tests.backup.test_backup_service import backup_in_its_dump, run_backup, wait_task
from tests.waiting import wait_for


def _scalar(engine, statement, **params):
    with engine.connect() as connection:
        return connection.execute(text(statement), params).scalar()


def _outbox(engine, event):
    with engine.connect() as connection:
        return connection.execute(text("SELECT body FROM backup.outbox WHERE event = :event ORDER BY sequence"),
                                  {"event": event}).scalars().all()


def _dead_replicas_task(engine, task_id, kind, server_id, params):
    """A task of a replica that crashed in it: running, claimed by a holder whose lease is gone."""
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO backup.tasks (id, kind, server_id, server_name, state, step_index, step_count, params, "
            "claimed_by, created_at, started_at) VALUES (:id, :kind, :server_id, 'backup-1', 'running', 1, 4, "
            "CAST(:params AS jsonb), 'gone-replica', now(), now())"),
            {"id": task_id, "kind": kind, "server_id": server_id, "params": json.dumps(params)})


def test_a_dead_replicas_backup_task_is_failed_and_the_living_holds_a_lease(rpc, admin, backup_server, engine):
    registered, _ = backup_server
    _dead_replicas_task(engine, "d" * 32, "backup", registered["server_id"], {"backup_server_id": registered["id"]})
    failed = wait_for(lambda: (t := rpc.call("backup", "get_task", admin, "d" * 32))["state"] == "failed" and t,
                      timeout=60, interval=0.2, what="the dead replica's task to be failed")
    assert failed["error"] == "interrupted: the backup replica running it stopped"
    assert _scalar(engine, "SELECT count(*) FROM backup.leases WHERE name LIKE 'replica:%' AND expires_at > now()") >= 1
    # The backup server is free again, and the living replica's tasks show in the one task list.
    task, _ = run_backup(rpc, admin, registered["id"])
    listed = rpc.call("backup", "list_tasks", admin, {"kind": "backup"})
    assert {t["id"] for t in listed["items"]} == {task["id"], "d" * 32} and listed["total"] == 2
    # The reaped task said how it ended, once (many polls of the living replica have passed since).
    [said] = [body for body in _outbox(engine, "backup_failed")]
    assert (said["task_id"], said["backup_id"], said["state"], said["error"], said["backup_server_id"]) == (
        "d" * 32, "d" * 32, "failed", failed["error"], registered["id"])


def test_every_ending_of_every_kind_says_so_once(rpc, admin, backup_server, engine):
    """A restore and a prune whose replica died, and a restore that fails, each end with their event."""
    registered, _ = backup_server
    _dead_replicas_task(engine, "e" * 32, "restore", registered["server_id"],
                        {"backup_id": "f" * 32, "backup_server_id": registered["id"], "into": "steward_nowhere"})
    wait_for(lambda: rpc.call("backup", "get_task", admin, "e" * 32)["state"] == "failed", timeout=60, interval=0.2,
             what="the dead replica's restore to be failed")
    _dead_replicas_task(engine, "a" * 32, "prune", registered["server_id"], {"backup_server_id": registered["id"]})
    wait_for(lambda: rpc.call("backup", "get_task", admin, "a" * 32)["state"] == "failed", timeout=60, interval=0.2,
             what="the dead replica's prune to be failed")
    run_backup(rpc, admin, registered["id"])
    [backup] = rpc.call("backup", "list_backups", admin, {})
    # A restore into a database that exists already fails, and says so.
    into = engine.url.database
    task, _ = wait_task(rpc, admin, rpc.call("backup", "restore_backup", admin, backup["id"], {"into": into}))
    assert task["state"] == "failed" and "already exists" in task["error"]
    restored = _outbox(engine, "backup_restored")
    assert [(b["task_id"], b["state"], b["into"]) for b in restored] == [
        ("e" * 32, "failed", "steward_nowhere"), (task["id"], "failed", into)]
    assert restored[0]["error"] == "interrupted: the backup replica running it stopped"
    assert restored[1]["backup_id"] == backup["id"] and "already exists" in restored[1]["error"]
    [pruned] = _outbox(engine, "backup_pruned")
    assert (pruned["task_id"], pruned["state"], pruned["removed"]) == ("a" * 32, "failed", [])
    assert [b["state"] for b in _outbox(engine, "backup_finished")] == ["succeeded"]


def test_a_backup_task_ended_by_another_writes_no_backup_finished(rpc, admin, backup_server, engine):
    """The event commits with the task's end: a replica whose task another ended (its lease lapsed) says nothing,
    and lists nothing."""
    registered, daemon = backup_server
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
    # Nor is its backup listed: the row commits with the task's end, or not at all.
    assert rpc.call("backup", "list_backups", admin, {}) == []
    assert rpc.call("backup", "task_log", admin, task["id"])["steps"][-1]["state"] == "failed"
    # A backup that ends as its own replica's writes its event with the end.
    task, _ = run_backup(rpc, admin, registered["id"])
    wait_for(lambda: _scalar(engine, "SELECT count(*) FROM backup.outbox WHERE event = 'backup_finished' "
                                     "AND body->>'backup_server_id' = :id", id=str(registered["id"])) == 1,
             timeout=30, what="backup_finished in the outbox")
    # restic had stored the cut run's snapshot: the next prune forgets it, as no backup lists it.
    [listed] = rpc.call("backup", "list_backups", admin, {})
    snapshots = daemon.repository_dir("steward") / "snapshots"
    assert len(list(snapshots.iterdir())) == 2
    rpc.call("backup", "set_retention_policy", admin, registered["id"], {"keep_last": 1})
    prune, log = wait_task(rpc, admin, rpc.call("backup", "prune", admin, registered["id"], {"dry_run": False})["task"])
    assert prune["state"] == "succeeded" and "forgot 1 snapshots that no backup listed" in log["steps"][0]["output"]
    assert [p.name[:8] for p in snapshots.iterdir()] == [listed["snapshot_id"][:8]]
    assert [b["id"] for b in rpc.call("backup", "list_backups", admin, {})] == [listed["id"]]


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


def test_a_verification_ended_by_another_records_nothing(rpc, admin, backup_server, engine):
    """The result commits with the verify task's end and backup_verified, or not at all."""
    registered, _ = backup_server
    with backup_in_its_dump(rpc, admin, engine, registered["id"]) as task:
        pass  # a backup with the ballast in it: restoring it into a scratch database takes seconds
    wait_task(rpc, admin, task)
    [backup] = rpc.call("backup", "list_backups", admin, {})
    verify = rpc.call("backup", "verify_backup", admin, backup["id"])
    wait_for(lambda: rpc.call("backup", "get_task", admin, verify["id"])["current_step"] == "restore_to_scratch",
             timeout=60, interval=0.01, what="the restore to scratch to start")
    with engine.begin() as connection:  # as a replica that found this one's lease expired does
        connection.execute(text("UPDATE backup.tasks SET state = 'failed', error = 'interrupted: test', "
                                "finished_at = now() WHERE id = :id"), {"id": verify["id"]})
    wait_for(lambda: (steps := rpc.call("backup", "task_log", admin, verify["id"])["steps"])[-1]["name"] == "record"
             and steps[-1]["state"] != "running", timeout=120, interval=0.2, what="the verification to reach its end")
    assert rpc.call("backup", "get_backup", admin, backup["id"])["verification"] == "unverified"
    assert _outbox(engine, "backup_verified") == []


def _children(name):
    """This process's children called ``name`` (the service runs in the test's process)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        if fields[0].split("(", 1)[1] == name and int(fields[1].split()[1]) == os.getpid():
            found.append(stat.parent.name)
    return found


def test_a_backup_cancelled_in_its_dump_stops_pg_dump_and_restic_and_lists_nothing(
        rpc, admin, backup_server, engine, api_url, admin_token, backup_events, capsys):
    registered, daemon = backup_server
    with backup_in_its_dump(rpc, admin, engine, registered["id"]) as task:
        dumps = wait_for(lambda: _children("restic") and _children("pg_dump"), timeout=30, interval=0.05,
                         what="pg_dump and restic to run")
        # Held where it is, so the dump cannot end before the cancel lands, however slowly the CLI starts on a
        # loaded machine (the cancel kills it with SIGKILL, which a stopped process takes too).
        for pid in dumps:
            os.kill(int(pid), signal.SIGSTOP)
        try:
            assert steward(api_url, admin_token, "tasks", "cancel", task["id"]) == 0  # the gateway's route
            assert "asked to stop" in capsys.readouterr().out
            ended = wait_for(lambda: (t := rpc.call("backup", "get_task", admin, task["id"]))["state"] not in (
                "queued", "running") and t, timeout=60, interval=0.2, what="the cancel to land")
        finally:
            for pid in _children("pg_dump"):  # not killed (the test failed): let it end, and the ballast go
                os.kill(int(pid), signal.SIGCONT)
        # The dump stopped where it was, not at its end: pg_dump and restic were killed, no snapshot was made.
        assert ended["state"] == "cancelled" and ended["error"] == f"cancelled by {admin['name']} after 3 of 4 steps"
        assert _children("pg_dump") == [] and _children("restic") == []
    steps = rpc.call("backup", "task_log", admin, task["id"])["steps"]
    assert [(s["name"], s["state"]) for s in steps][-1] == ("dump_and_store", "failed")
    assert f"cancelled by {admin['name']}" in steps[-1]["output"]
    assert rpc.call("backup", "list_backups", admin, {}) == []
    assert list((daemon.repository_dir("steward") / "snapshots").iterdir()) == []
    # The next backup runs whole, and each ended task said so once.
    second, _ = run_backup(rpc, admin, registered["id"])
    assert len(rpc.call("backup", "list_backups", admin, {})) == 1
    events = backup_events.until("backup_finished", task_id=second["id"])
    assert [(name, p["task_id"], p["state"]) for name, p in events] == [
        ("backup_failed", task["id"], "cancelled"), ("backup_finished", second["id"], "succeeded")]
    assert events[0][1]["error"] == ended["error"]

"""A live restore: the control plane's own database replaced by a backup, on a database of the test's own
(``<test db>_live``, migrated, a backup service of its own running on it; inventory stays on the session's):
the rows come back, migrated to head, the database as it was is kept under a new name with connections off,
the task ends in the new database with its one backup_restored, and a gateway's token cache is emptied.
A wrong confirmation, and a swap that fails half way, leave the live database as it was and serving."""
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from gateway.auth_cache import PrincipalCache, RevocationFeed
from services.backup import dump
from services.backup.exceptions import EngineFailed
from shared.errors import ValidationFailed
from shared.migrations import downgrade, upgrade
from tests.backup.conftest import BACKUP_PASSWORD, set_backup_password
from tests.backup.daemon_lab import drop_databases, enrolled_daemon
from tests.backup.test_backup_cli import steward
from tests.backup.test_backup_service import run_backup
from tests.waiting import wait_for

CRON = ("0 3 * * *", "30 4 * * 1")


def _rows(database_url, statement, **params):
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            return connection.execute(text(statement), params).all()
    finally:
        engine.dispose()


@pytest.fixture
def live_stack(settings, rpc, admin, start_service, tmp_path):
    """(the backup server as the API shows it, the live database's URL): a backup service whose database is one
    of the test's own; the restores' databases (``<live>_replaced_*``, ``<live>_restore_*``) go with it."""
    from services.backup.service import BackupService

    live = f"{make_url(settings.database_url).database}_live"
    live_url = make_url(settings.database_url).set(database=live).render_as_string(hide_password=False)
    drop_databases(settings.database_url, live)
    dump.create_scratch(settings.database_url, live)
    upgrade(live_url)
    set_backup_password(rpc, admin, BACKUP_PASSWORD)
    server = rpc.call("inventory", "create_server", admin, {"name": "backup-live", "address": "127.0.0.1",
                                                            "os": "ubuntu", "components": ["backup"],
                                                            "ssh_password": "unused"})
    try:
        with enrolled_daemon(settings.secret_key, server["id"], tmp_path / "daemon") as daemon:
            container = start_service(BackupService, {
                "DATABASE_URL": live_url, "database": {"pool_size": 2},
                "backup": {"restic_cache_dir": str(tmp_path / "restic-cache"), "pool_size": 2}})
            registered = rpc.call("backup", "create_backup_server", admin, {"server_id": server["id"],
                                                                            "port": daemon.port})
            yield registered, live_url
            container.stop()
    finally:
        drop_databases(settings.database_url, live)


def _ended(rpc, admin, task_id):
    """The task once ended; while the databases swap its service answers 503 for a moment."""
    def ended():
        try:
            task = rpc.call("backup", "get_task", admin, task_id)
        except Exception:  # noqa: BLE001 - the database is being swapped
            return None
        return task if task["state"] not in ("queued", "running") else None
    return wait_for(ended, timeout=90, interval=0.2, what=f"task {task_id} to end")


def test_a_live_restore_brings_the_rows_back_migrated_and_keeps_the_database_as_it_was(
        rpc, admin, settings, live_stack, api_url, admin_token, backup_events, monkeypatch, capsys):
    registered, live_url = live_stack
    live = make_url(live_url).database
    head = _rows(live_url, "SELECT version_num FROM notifier.alembic_version")[0][0]
    downgrade(live_url, "notifier", "-1")  # the backup is older than the code: the restore migrates it
    older = _rows(live_url, "SELECT version_num FROM notifier.alembic_version")[0][0]
    assert older != head
    for cron in CRON:
        rpc.call("backup", "create_schedule", admin, {"backup_server_id": registered["id"], "cron": cron})
    # An event unsent when the backup is taken (no updater relays this database): sent since, as far as the
    # restored database is concerned, so not published a second time.
    _rows(live_url, "INSERT INTO updater.outbox (id, event, body) VALUES (:id, 'test_event', '{}') RETURNING 1",
          id="f" * 32)
    run_backup(rpc, admin, registered["id"])
    [backup] = rpc.call("backup", "list_backups", admin, {})
    for schedule in rpc.call("backup", "list_schedules", admin):
        rpc.call("backup", "delete_schedule", admin, schedule["id"])

    # Without the exact confirmation nothing is queued and nothing changes: the API, then the CLI.
    for refused in ({"live": True}, {"live": True, "confirm": "steward"}, {"live": True, "into": "x"}):
        with pytest.raises(ValidationFailed) as raised:
            rpc.call("backup", "restore_backup", admin, backup["id"], refused)
    assert "either into" in str(raised.value.details)
    monkeypatch.setattr("builtins.input", lambda prompt: "steward")
    assert steward(api_url, admin_token, "backups", "restore", backup["id"], "--live") == 1
    said = capsys.readouterr().out
    assert f"replaces the control plane's database {live}" in said and "not confirmed" in said
    assert rpc.call("backup", "list_tasks", admin, {"kind": "restore"})["items"] == []
    with pytest.raises(SystemExit) as exited:  # --into and --live are one or the other
        steward(api_url, admin_token, "backups", "restore", backup["id"], "--live", "--into", "x")
    assert exited.value.code == 2 and "not allowed with argument" in capsys.readouterr().err

    cache = PrincipalCache(60, feed=(feed := RevocationFeed(settings, reconnect_seconds=0.2)))
    try:
        cache.put("a token made after the backup", {"user_id": 1, "role": "admin"}, cache.ticket())
        wait_for(lambda: feed.consuming, what="the revocation feed to consume")
        task = rpc.call("backup", "restore_backup", admin, backup["id"], {"live": True, "confirm": live})
        ended = _ended(rpc, admin, task["id"])
        log = rpc.call("backup", "task_log", admin, task["id"])
        assert ended["state"] == "succeeded", (ended["error"], log)
        # The gateway forgets every cached token: those made after the backup are gone from the database.
        wait_for(lambda: cache.get("a token made after the backup") is None, what="the token cache to empty")
    finally:
        feed.stop()

    assert [s["name"] for s in log["steps"]] == ["restore", "migrate", "swap"]
    assert f"notifier {older} -> {head}" in log["steps"][1]["output"]
    assert _rows(live_url, "SELECT sent_at IS NOT NULL FROM updater.outbox WHERE id = :id", id="f" * 32) == [(True,)]
    assert ("1 events the backup had not sent marked sent; of the backup tasks it held at work, 1 ended as they did since, 0 failed; 1 backups stored since it "
            "listed again") in log["steps"][1]["output"]
    assert sorted(s["cron"] for s in rpc.call("backup", "list_schedules", admin)) == sorted(CRON)
    assert _rows(live_url, "SELECT version_num FROM notifier.alembic_version")[0][0] == head
    # The backup that was restored is listed (it was written after its own dump); its task is not left running.
    assert [b["id"] for b in rpc.call("backup", "list_backups", admin, {})] == [backup["id"]]
    assert rpc.call("backup", "get_task", admin, backup["task_id"])["state"] == "succeeded"
    # The database as it was: kept, renamed, connections refused.
    [(replaced, allowed)] = _rows(settings.database_url, "SELECT datname, datallowconn FROM pg_database "
                                                         "WHERE datname LIKE :p", p=f"{live}\\_replaced\\_%")
    assert not allowed and f"kept as {replaced}" in log["steps"][2]["output"]
    with pytest.raises(OperationalError, match="not currently accepting connections"):
        _rows(make_url(live_url).set(database=replaced).render_as_string(hide_password=False), "SELECT 1")
    # One backup_restored, written in the new database with the task's end, and published.
    [(body,)] = _rows(live_url, "SELECT body FROM backup.outbox WHERE event = 'backup_restored'")
    assert (body["task_id"], body["live"], body["into"], body["replaced"], body["state"]) == (
        task["id"], True, live, replaced, "succeeded")
    [(_, published)] = [e for e in backup_events.until("backup_restored") if e[0] == "backup_restored"]
    assert published["id"] == body["id"]


def test_a_swap_that_fails_half_way_leaves_the_live_database_serving(rpc, admin, settings, live_stack):
    registered, live_url = live_stack
    live = make_url(live_url).database
    rpc.call("backup", "create_schedule", admin, {"backup_server_id": registered["id"], "cron": CRON[0]})
    # The restored database is missing: the live one was closed and renamed before that showed, and is put back.
    with pytest.raises(EngineFailed, match=f"the live database {live} is back as it was"):
        dump.swap(live_url, f"{live}_restore_missing", f"{live}_replaced_test")
    assert _rows(settings.database_url, "SELECT datname, datallowconn FROM pg_database WHERE datname LIKE :p",
                 p=f"{live}%") == [(live, True)]
    assert [s["cron"] for s in rpc.call("backup", "list_schedules", admin)] == [CRON[0]]

    # A database user that does not own the database: the task's error says what it needs, and nothing changed.
    role = f"{live}_nopriv"
    admin_url = make_url(settings.database_url).set(database="postgres").render_as_string(hide_password=False)
    _autocommit(admin_url, f'DROP ROLE IF EXISTS "{role}"', f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'unprivileged'")
    try:
        with pytest.raises(EngineFailed, match="must own the live database and have CREATEDB"):
            dump.swap(make_url(live_url).set(username=role, password="unprivileged")
                      .render_as_string(hide_password=False), f"{live}_restore_missing", f"{live}_replaced_test")
    finally:
        _autocommit(admin_url, f'DROP ROLE IF EXISTS "{role}"')
    assert _rows(settings.database_url, "SELECT datname, datallowconn FROM pg_database WHERE datname LIKE :p",
                 p=f"{live}%") == [(live, True)]


def _autocommit(database_url, *statements):
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()

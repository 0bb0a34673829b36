"""Retention on real backups with injected times: the dry run is exactly what prune removes, the
control plane's append-only credentials cannot delete a kept backup; schedules fire once."""
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import text

from services.backup.backups import Progress
from services.backup.dependencies import BackupRunner
from shared.crypto import SecretBox
from shared.errors import Conflict
from tests.backup.test_backup_service import wait_task


def runner_of(container):
    return next(e for e in container.extensions if isinstance(e, BackupRunner))


def at(month, day):
    return datetime(2025, month, day, 3, 0, tzinfo=timezone.utc)


def test_a_simulated_year_keeps_the_expected_backups_and_dry_run_is_what_prune_removes(
        rpc, admin, backup_server, backup_service, settings, engine, backup_events):
    registered, daemon = backup_server
    runner = runner_of(backup_service)
    times = [at(1, 1), at(2, 1), at(3, 1), at(6, 1), at(12, 1), at(12, 20), at(12, 30), at(12, 31)]
    for taken_at in times:
        runner.backups.run(registered["id"], Progress(), taken_at=taken_at)
    by_time = {b["taken_at"]: b for b in rpc.call("backup", "list_backups", admin, {})}
    assert len(by_time) == 8
    policy = {"keep_last": 2, "keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 3, "keep_yearly": 0}
    assert rpc.call("backup", "set_retention_policy", admin, registered["id"], policy) == policy

    dry = rpc.call("backup", "prune", admin, registered["id"], {"dry_run": True})
    kept = {b["taken_at"]: b["reasons"] for b in dry["keep"]}
    assert kept == {at(12, 31).isoformat(): ["last 2", "monthly 2025-12"], at(12, 30).isoformat(): ["last 2"],
                    at(6, 1).isoformat(): ["monthly 2025-6"], at(3, 1).isoformat(): ["monthly 2025-3"]}
    removed = {b["id"] for b in dry["remove"]}
    assert removed == {by_time[at(m, d).isoformat()]["id"] for m, d in ((1, 1), (2, 1), (12, 1), (12, 20))}
    assert len(rpc.call("backup", "list_backups", admin, {})) == 8  # a dry run changes nothing

    # The control plane's own (append-only) credentials cannot delete a kept backup on the server...
    with engine.connect() as connection:
        sealed = connection.execute(text("SELECT append_password_sealed FROM backup.backup_servers")).scalar()
    kept_snapshot = next(p.name for p in (daemon.repository_dir("steward") / "snapshots").iterdir())
    refused = requests.delete(f"{daemon.url}/steward/snapshots/{kept_snapshot}",
                              auth=("steward", SecretBox(settings.secret_key).open(sealed)), timeout=10)
    assert refused.status_code == 403
    # ...and the service refuses to delete one the policy keeps.
    with pytest.raises(Conflict):
        rpc.call("backup", "delete_backup", admin, by_time[at(6, 1).isoformat()]["id"])

    pruned = rpc.call("backup", "prune", admin, registered["id"], {"dry_run": False})
    task, log = wait_task(rpc, admin, pruned["task"])
    assert task["state"] == "succeeded", log
    left = rpc.call("backup", "list_backups", admin, {})
    assert {b["taken_at"] for b in left} == set(kept)
    snapshots = {p.name[:8] for p in (daemon.repository_dir("steward") / "snapshots").iterdir()}
    assert snapshots == {b["snapshot_id"][:8] for b in left}
    [said] = [p for name, p in backup_events.until("backup_pruned") if name == "backup_pruned"]
    assert (said["task_id"], said["state"], set(said["removed"]), said["kept"]) == (task["id"], "succeeded", removed, 4)
    again = rpc.call("backup", "prune", admin, registered["id"], {"dry_run": True})
    assert again["remove"] == []


def test_a_due_schedule_fires_once_across_two_replicas(rpc, admin, backup_server, backup_service, start_service,
                                                        engine, tmp_path):
    from services.backup.service import BackupService

    registered, _ = backup_server
    second = start_service(BackupService, {"backup": {"restic_cache_dir": str(tmp_path / "cache-2"), "pool_size": 2},
                                           "database": {"pool_size": 2}})
    schedule = rpc.call("backup", "create_schedule", admin, {"backup_server_id": registered["id"], "cron": "0 3 * * *"})
    assert datetime.fromisoformat(schedule["next_run_at"]).hour == 3
    later = datetime.fromisoformat(schedule["next_run_at"]) + timedelta(seconds=1)
    fired, barrier = [], threading.Barrier(2)

    def fire(container):
        barrier.wait()
        fired.append(runner_of(container).fire_schedules(later))

    threads = [threading.Thread(target=fire, args=(c,)) for c in (backup_service, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(fired) == [0, 1]
    [shown] = rpc.call("backup", "list_schedules", admin)
    assert shown["last_task_id"] and datetime.fromisoformat(shown["next_run_at"]) == datetime.fromisoformat(
        schedule["next_run_at"]) + timedelta(days=1)
    task, log = wait_task(rpc, admin, {"id": shown["last_task_id"]})
    assert task["state"] == "succeeded" and task["requested_by"] == "schedule", log
    assert len(rpc.call("backup", "list_backups", admin, {})) == 1

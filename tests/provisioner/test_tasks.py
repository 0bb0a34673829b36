"""Tasks across replicas, on the real database: claimed once, and never left running by a dead replica
(one whose lease is gone)."""

import eventlet
from sqlalchemy.orm import sessionmaker

from services.provisioner.models import Lease as LeaseRow, Task, TaskStep
from shared.leases import Lease
from shared.tasks import TaskStore
from shared.errors import OperationInProgress
from tests.waiting import wait_for


def _store(engine):
    return TaskStore(sessionmaker(bind=engine, expire_on_commit=False), Task, TaskStep)


def test_two_replicas_never_claim_the_same_task(engine):
    store = _store(engine)
    created = {store.create("probe", server_id, "s", {}, "admin", 3)["id"] for server_id in range(30)}

    def replica(name):
        mine = []
        while claimed := store.claim(name, 2, kinds=("probe",)):
            mine.extend(claimed)
            eventlet.sleep(0)
        return mine

    first, second = eventlet.spawn(replica, "a"), eventlet.spawn(replica, "b")
    a, b = first.wait(), second.wait()
    assert set(a) | set(b) == created
    assert not set(a) & set(b) and len(a) + len(b) == len(created)


def test_one_task_per_server_at_a_time_even_from_two_replicas(engine):
    store = _store(engine)
    outcomes = [eventlet.spawn(_create_or_refusal, store) for _ in range(2)]
    first, second = sorted((o.wait() for o in outcomes), key=lambda r: isinstance(r, OperationInProgress))
    assert isinstance(second, OperationInProgress), "both replicas queued a task for the same server"
    assert second.details == {"task_id": [first["id"]]} and first["id"] in second.message
    assert second.http_status == 409 and second.code == "operation_in_progress"
    store.claim("replica", 1, kinds=("probe",))
    store.finish(first["id"], "succeeded")
    assert store.create("probe", 7, "dns-7", {}, "admin", 3)["state"] == "queued"  # free again once it ended


def _create_or_refusal(store):
    try:
        return store.create("probe", 7, "dns-7", {}, "admin", 3)
    except OperationInProgress as refused:
        return refused


def test_a_dead_replicas_running_tasks_fail_at_start_up(engine, start_service, settings):
    from services.provisioner.service import ProvisionerService

    store = _store(engine)
    # Kind "probe": no running provisioner picks these up while the test sets them up.
    orphan = store.create("probe", 1, "dns-1", {}, "admin", 16)["id"]
    kept = store.create("probe", 2, "dns-2", {}, "admin", 16)["id"]
    assert store.claim("crashed-replica", 1, kinds=("probe",)) == [orphan]
    store.step_started(orphan, 3, "upload")
    alive = Lease(sessionmaker(bind=engine), LeaseRow, "replica:live-replica", "live-replica", 60)
    assert alive.keep()  # a replica that still runs holds its lease; the crashed one's lapsed (or never was)
    try:
        assert store.claim("live-replica", 1, kinds=("probe",)) == [kept]
        start_service(ProvisionerService)  # a (re)started replica looks for interrupted work first

        # 60 s: a replica starting on a loaded machine (CI runs three test processes side by side).
        wait_for(lambda: store.get(orphan)[0]["state"] != "running", timeout=60, interval=0.1,
                 what="the orphan task failed by the starting replica")
        task, steps = store.get(orphan)
        assert task["state"] == "failed" and "interrupted" in task["error"]
        assert steps[0]["state"] == "failed" and "interrupted" in steps[0]["output"]
        assert store.get(kept)[0]["state"] == "running"
    finally:
        alive.release()

"""Replicas hold leases, not session locks: terminated database backends cost no task and no
second ending, and a replica stops cleanly after them."""
from sqlalchemy import text

from gateway.routes import PREFIX
from services.provisioner.service import ProvisionerService
from shared.task_runner import TaskRunner
from tests.provisioner.conftest import push_install, register, wait_for_task
from tests.waiting import wait_for

TERMINATE = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def _terminate_backends(engine):
    with engine.connect() as connection:
        return connection.execute(text(TERMINATE)).scalar()


def _runner(container):
    return next(ext for ext in container.extensions if isinstance(ext, TaskRunner))


def test_a_replica_renews_its_lease_after_its_backends_were_terminated_and_stops_cleanly(
        start_service, settings, engine):
    container = start_service(ProvisionerService, {"provisioner": dict(settings.section("provisioner"),
                                                                       lease_seconds=3)})
    holder = _runner(container).holder
    renewed = f"SELECT renewed_at FROM provisioner.leases WHERE name = 'replica:{holder}'"

    def renewed_at():
        with engine.connect() as connection:
            return connection.execute(text(renewed)).scalar()

    wait_for(renewed_at, what="the replica's lease")
    with engine.connect() as connection:
        terminated_at = connection.execute(text("SELECT now()")).scalar()
    assert _terminate_backends(engine) >= 1
    wait_for(lambda: (renewed_at() or terminated_at) > terminated_at, what="the lease renewed after the termination")
    container.stop()  # no dead lock connection to trip over
    assert renewed_at() is None  # released on the way out: no one waits for it to expire


def test_two_replicas_and_terminated_backends_end_an_install_exactly_once(
        api, lab, provisioner_events, start_service, engine):
    start_service(ProvisionerService)  # a second replica beside the tests' shared one
    server = register(api, lab)
    task = push_install(api, server["id"])
    # Past the provisioner's database work of the first steps: the install is busy on the host.
    wait_for(lambda: api.simulate_get(f"{PREFIX}/tasks/{task['id']}").json["step_index"] >= 4,
             what="the install to reach its upload", timeout=120)
    assert _terminate_backends(engine) >= 1

    finished, _ = wait_for_task(api, task["id"], timeout=300)
    seen = []

    def finished_events():
        seen.extend(p for name, p in provisioner_events() if name == "install_finished" and p["task_id"] == task["id"])
        return seen

    wait_for(finished_events, what="install_finished")
    assert finished["state"] == "succeeded", finished["error"]
    assert [e["state"] for e in seen] == ["succeeded"]

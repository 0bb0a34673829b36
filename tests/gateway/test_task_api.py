"""GET /api/v2/tasks: every kind of task (each service keeps its own), newest first, filtered and paged,
through the real gateway and every service."""
from datetime import timedelta

import pytest
from falcon import testing

from sqlalchemy.orm import sessionmaker

from cli.main import main
from gateway.routes import PREFIX
from services.provisioner.models import Lease as LeaseRow, Task, TaskStep
from services.updater import models as updater_models
from shared.leases import Lease
from shared.tasks import TaskStore, utcnow


@pytest.fixture
def api(app, all_services, auth):
    return testing.TestClient(app, headers=auth)


def test_tasks_are_listed_newest_first_filtered_and_paged(api, engine, api_url, admin_token, capsys):
    start = utcnow() - timedelta(hours=1)
    moments = iter(start + timedelta(minutes=i) for i in range(100))
    store = TaskStore(sessionmaker(bind=engine, expire_on_commit=False), Task, TaskStep, clock=lambda: next(moments))
    # Kind "probe": no provisioner replica runs these, they stay as the test leaves them.
    made = [store.create("probe", 1 + i, f"s{1 + i}", {}, "admin", 3) for i in range(5)]
    # The oldest runs, on a replica that holds its lease (else any provisioner fails it as abandoned).
    assert Lease(store.Session, LeaseRow, "replica:replica-a", "replica-a", 600).keep()
    store.claim("replica-a", 1, ("probe",))

    listed = api.simulate_get(f"{PREFIX}/tasks", params={"kind": "probe"})
    assert listed.status_code == 200, listed.text
    assert [t["id"] for t in listed.json["items"]] == [t["id"] for t in reversed(made)]
    assert listed.json["total"] == 5 and listed.json["page"] == 1

    second = api.simulate_get(f"{PREFIX}/tasks", params={"kind": "probe", "per_page": 2, "page": 2}).json
    assert [t["id"] for t in second["items"]] == [made[2]["id"], made[1]["id"]] and second["total"] == 5

    one_server = api.simulate_get(f"{PREFIX}/tasks", params={"server_id": 2}).json
    assert [t["id"] for t in one_server["items"]] == [made[1]["id"]]
    running = api.simulate_get(f"{PREFIX}/tasks", params={"state": "running"}).json
    assert [t["id"] for t in running["items"]] == [made[0]["id"]] and running["items"][0]["kind"] == "probe"
    window = {"since": made[1]["created_at"].isoformat(), "until": made[3]["created_at"].isoformat()}
    # The updater's tasks are listed with the provisioner's: one list over every kind.
    updates = TaskStore(sessionmaker(bind=engine, expire_on_commit=False), updater_models.Task,
                        updater_models.TaskStep, clock=lambda: start + timedelta(minutes=30))
    # (kind "probe" here too: no updater replica runs it, so it stays queued as made)
    update = updates.create("probe", 9, "s9", {}, "admin", component="dns", outcome={})
    both = api.simulate_get(f"{PREFIX}/tasks", params={"per_page": 2}).json
    assert [t["id"] for t in both["items"]] == [update["id"], made[4]["id"]] and both["total"] == 6
    assert api.simulate_get(f"{PREFIX}/tasks/{update['id']}").json["server_name"] == "s9"
    assert api.simulate_get(f"{PREFIX}/tasks/{update['id']}/log").json == {"task_id": update["id"], "state": "queued",
                                                                          "steps": []}
    assert [t["id"] for t in api.simulate_get(f"{PREFIX}/tasks", params=window).json["items"]] == [
        made[2]["id"], made[1]["id"]]

    assert main(["--url", api_url, "--token", admin_token, "tasks", "list", "--server", "2"]) == 0
    out = capsys.readouterr().out
    assert made[1]["id"] in out and made[0]["id"] not in out and made[3]["id"] not in out
    assert "1 of 1 task(s), page 1" in out


def test_bad_task_queries_are_clear_400s(api):
    for params, field in (({"state": "sleeping"}, "state"), ({"per_page": 0}, "per_page"),
                          ({"page": 1000, "per_page": 100}, "page"), ({"since": "yesterday"}, "since"),
                          ({"colour": "red"}, "colour")):
        refused = api.simulate_get(f"{PREFIX}/tasks", params=params)
        assert refused.status_code == 400 and field in refused.json["details"], (params, refused.json)

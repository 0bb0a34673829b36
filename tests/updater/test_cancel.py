"""Cancelling tasks (POST /api/v2/tasks/{id}/cancel, `steward tasks cancel|log`) against the real updater: a
queued task ends cancelled at once; a running one is marked and its runner stops before its next step
(state cancelled, one diagnostics_finished saying so); a finished one answers 409 with a JSON message."""
import socket

import pytest

from gateway.routes import PREFIX
from shared.config import Settings
from tests.waiting import wait_for


@pytest.fixture
def updater_settings(settings, storage):
    # One task at a time, so a second waits queued behind the first; an SSH login gives up after 10 s.
    options = dict(settings.section("updater"), storage_dir=str(storage), ssh_timeout_seconds=10, max_parallel_tasks=1)
    return Settings(dict(settings, updater=options))


@pytest.fixture
def silent_ssh():
    """A port that takes connections and never says a word: an SSH login there waits for its timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_queued_task_is_cancelled_at_once_a_running_one_between_steps_and_a_finished_one_is_409(
        api, steward, rpc, admin, silent_ssh, updater_events):
    first, second = (rpc.call("inventory", "create_server", admin, {
        "name": f"silent-{n}", "address": "127.0.0.1", "ssh_port": silent_ssh, "os": "ubuntu", "ssh_password": "x",
        "runtime": "process"}) for n in (1, 2))
    running = api.simulate_post(f"{PREFIX}/servers/{first['id']}/actions/diagnostics").json
    wait_for(lambda: api.simulate_get(f"{PREFIX}/tasks/{running['id']}").json["current_step"] == "ssh", timeout=30,
             what="the first run to be logging in")
    queued = api.simulate_post(f"{PREFIX}/servers/{second['id']}/actions/diagnostics").json

    code, out, _ = steward("tasks", "cancel", queued["id"])  # the one slot is the first run's: this one waits
    assert code == 0 and out.strip() == f"diagnostics task {queued['id']} on silent-2: cancelled", out
    task = api.simulate_get(f"{PREFIX}/tasks/{queued['id']}").json
    assert (task["state"], task["error"], task["started_at"]) == ("cancelled", "cancelled by admin before it started",
                                                                 None)

    asked = api.simulate_post(f"{PREFIX}/tasks/{running['id']}/cancel")
    assert asked.status_code == 202, asked.text
    assert asked.json["state"] == "running" and asked.json["cancel_requested_by"] == "admin"
    assert asked.json["cancel_requested_at"] is not None
    # It stops before its next check: the login it was in ends (timed out), the heartbeat check never starts.
    code, out, _ = steward("tasks", "log", running["id"], "--poll-seconds", "0.2")
    assert code == 1 and "== 1. ssh: failed" in out and "cannot log in over SSH" in out, out
    assert "heartbeat" not in out and out.rstrip().endswith(f"-- task {running['id']}: cancelled"), out
    task = api.simulate_get(f"{PREFIX}/tasks/{running['id']}").json
    assert (task["state"], task["error"]) == ("cancelled", "cancelled by admin after 1 of 1 steps")
    run = api.simulate_get(f"{PREFIX}/servers/{first['id']}/diagnostics/{running['id']}").json
    assert [c["name"] for c in run["checks"]] == ["ssh"]  # what it found before it stopped is kept

    events = updater_events.until("diagnostics_finished", task_id=running["id"])
    finished = sorted((p["task_id"], p["state"]) for n, p in events if n.endswith("_finished"))
    assert finished == sorted([(queued["id"], "cancelled"), (running["id"], "cancelled")]), events

    again = api.simulate_post(f"{PREFIX}/tasks/{running['id']}/cancel")
    assert again.status_code == 409 and again.json["error"] == "task_finished", again.text
    assert again.json["message"] == (f"diagnostics task {running['id']} has already ended (cancelled); only a queued "
                                     "or running task can be cancelled")
    code, _, err = steward("tasks", "cancel", queued["id"])
    assert code == 1 and "has already ended (cancelled)" in err, err
    assert api.simulate_post(f"{PREFIX}/tasks/{'0' * 32}/cancel").status_code == 404

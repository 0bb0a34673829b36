"""The updater's keyed creates (image upload, rollout) against a crash right after their
first commit: the test hook (shared/idempotency.py CRASH_AFTER_COMMIT) makes the request die there,
before it answers, as a process killed at that point would. Its retry with the same Idempotency-Key
must get the answer of what was committed and make nothing more. When the change committed before
its answer (a second transaction for the answer), the retry found the key without an answer and was
refused "still running" for a day."""
import uuid

import pytest
from sqlalchemy import text

from gateway.routes import PREFIX
from shared.idempotency import CRASH_AFTER_COMMIT
from tests.updater.images import dns_image

GZIP = {"Content-Type": "application/gzip"}


def _rows(engine, query):
    with engine.connect() as connection:
        return connection.execute(text(query)).all()


def _crash_then_retry(api, monkeypatch, path, **request):
    """The create with a new key dies after its commit (the caller gets a 5xx, no answer); its retry's answer."""
    headers = {**request.pop("headers", {}), "Idempotency-Key": str(uuid.uuid4())}
    monkeypatch.setenv(CRASH_AFTER_COMMIT, "1")
    try:
        crashed = api.simulate_post(path, headers=headers, **request)
    finally:
        monkeypatch.delenv(CRASH_AFTER_COMMIT)
    assert crashed.status_code >= 500, crashed.text
    retried = api.simulate_post(path, headers=headers, **request)
    assert retried.status_code == 201, retried.text
    return retried.json


@pytest.fixture
def local_mode(rpc, admin):
    rpc.call("inventory", "update_settings", admin, {"update": {"mode": "local"}})


def test_an_upload_that_died_after_its_commit_answers_its_retry_with_the_image(api, engine, storage, monkeypatch,
                                                                               local_mode):
    image = _crash_then_retry(api, monkeypatch, f"{PREFIX}/versions", body=dns_image("7.1"), headers=GZIP)
    rows = _rows(engine, "SELECT component, version, sha256 FROM updater.images")
    assert [tuple(r) for r in rows] == [("dns", "7.1", image["sha256"])] and image["version"] == "7.1"
    # One image file, and the retry's own upload was not left in the spool.
    assert [p.parent.name for p in storage.rglob("*") if p.is_file()] == ["dns"]


def test_a_rollout_that_died_after_its_commit_answers_its_retry_with_the_rollout(api, rpc, admin, engine,
                                                                                 monkeypatch):
    for i in range(2):  # SSH closed: their update tasks fail at once, which is all this needs
        rpc.call("inventory", "create_server", admin, {"name": f"keyed-{i}", "address": "127.0.0.1", "ssh_port": 1,
                                                       "os": "ubuntu", "ssh_password": "x", "runtime": "process"})
    rollout = _crash_then_retry(api, monkeypatch, f"{PREFIX}/rollouts", json={"search": "keyed-", "batch_size": 1})
    assert [r.id for r in _rows(engine, "SELECT id FROM updater.rollouts")] == [rollout["id"]]
    # The first wave started with the rollout: one task, the one the answer names.
    assert [s["state"] for s in rollout["servers"]] == ["running", "pending"]
    tasks = _rows(engine, "SELECT id, rollout_id FROM updater.tasks")
    assert [(t.id, t.rollout_id) for t in tasks] == [(rollout["servers"][0]["task_id"], rollout["id"])]


"""The list's liveness columns are reused for ``fleet_status_cache_seconds``, but a client that asks for fresh ones
with Cache-Control (the web console does) gets a heartbeat on its next request."""
import uuid
from datetime import datetime, timezone

import pytest
from falcon import testing

from gateway.app import create_app
from gateway.routes import PREFIX
from shared.config import Settings
from tests.conftest import agent_token
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def cached_for_an_hour(settings, rpc):
    """The app with liveness answers reused for an hour unless a client asks for fresher ones."""
    gateway = dict(settings.section("gateway"), fleet_status_cache_seconds=3600, fleet_status_fresh_seconds=0.5)
    return testing.TestClient(create_app(Settings(dict(settings, gateway=gateway)), rpc=rpc))


def test_a_client_that_asks_for_fresh_rows_sees_a_stored_heartbeat_at_once(cached_for_an_hour, auth, rpc, monitoring):
    client = cached_for_an_hour
    name = f"fresh-{uuid.uuid4().hex[:8]}"
    server = client.simulate_post(f"{PREFIX}/servers", headers=auth, json={
        "name": name, "address": "127.0.0.1", "os": "ubuntu", "ssh_password": "hunter2-secret"}).json

    def requests_listed(cache_control=None):
        headers = dict(auth, **({"Cache-Control": cache_control} if cache_control else {}))
        return client.simulate_get(f"{PREFIX}/servers", params={"search": name}, headers=headers).json["items"][0][
            "requests"]

    assert requests_listed() == 0  # now reused for an hour
    beat = {"v": 1, "kind": "heartbeat", "server_id": server["id"], "seq": 1,
            "collected_at": datetime.now(timezone.utc).isoformat(), "data": {"agent_version": "1.0.0"}}
    sent = client.simulate_post(f"{PREFIX}/monitoring/heartbeat", json=beat,
                                headers={"Authorization": f"Bearer {agent_token(rpc, server['id'])}"})
    assert sent.status_code == 202, sent.text
    wait_for(lambda: rpc.call("monitoring_ingest", "fleet_status", [server["id"]]).get(str(server["id"])),
             what="the heartbeat stored")
    assert requests_listed() == 0  # a client that does not ask is served the cached answer
    assert wait_for(lambda: requests_listed("max-age=0") == 1, what="the heartbeat in a fresh list")
    assert requests_listed() == 1  # and the fresh answer is everyone's from then on

"""Pull mode against a real HTTP endpoint that speaks the agent's pull protocol."""
import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from shared.crypto import AGENT_TOKEN
from tests.conftest import TEST_BOX

from .helpers import message, wait_for

TOKEN = "agent-token-for-pull"


def sealed(token):
    """As the provisioner hands a token over: sealed for the broker as inventory issued it (shared/crypto.py)."""
    return TEST_BOX.seal_for(AGENT_TOKEN, token)
BASE = datetime.now(timezone.utc) - timedelta(minutes=30)


class AgentEndpoint:
    """GET /v1/stats?after=<cursor>&limit=<n> with a bearer token, as docs/agent-protocol.md says."""

    def __init__(self):
        self.items = []  # (cursor, message)
        self.asked = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlparse(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": "not_authenticated"})
                if url.path != "/v1/stats":
                    return self._send(404, {})
                query = parse_qs(url.query)
                after, limit = int(query["after"][0]), int(query.get("limit", ["100"])[0])
                endpoint.asked.append(after)
                page = [(c, m) for c, m in endpoint.items if c > after][:limit]
                self._send(200, {"items": [m for _, m in page], "next_cursor": page[-1][0] if page else after})

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, item):
        self.items.append((len(self.items) + 1, item))


@pytest.fixture
def agent_endpoint():
    endpoint = AgentEndpoint()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_pull_mode_stores_everything_once_and_keeps_the_cursor(rpc, server, monitoring, agent_endpoint, scalar):
    sid = server["id"]
    for seq in range(3):
        agent_endpoint.add(message("system", sid, seq, BASE + timedelta(seconds=seq)))
    agent_endpoint.add(message("dns", sid, 0, BASE + timedelta(seconds=5), total=2, records=[
        {"name": "pull.example.", "type": "TXT", "hits": 2, "last_access": BASE.isoformat()}]))
    answer = rpc.call("monitoring_ingest", "set_pull_target", sid, "127.0.0.1", sealed(TOKEN), 1, agent_endpoint.port)
    assert answer == {"server_id": sid, "address": "127.0.0.1", "port": agent_endpoint.port, "interval_seconds": 1}
    assert TOKEN not in scalar("SELECT token_sealed FROM monitoring.pull_targets")

    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = :s", s=sid) == 3
             and scalar("SELECT count(*) FROM monitoring.dns_periods, jsonb_array_elements(records) "
                                 "WHERE server_id = :s", s=sid) == 1)
    assert scalar("SELECT cursor FROM monitoring.pull_targets WHERE server_id = :s", s=sid) == 4

    agent_endpoint.add(message("system", sid, 3, BASE + timedelta(seconds=9)))
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = :s", s=sid) == 4)
    wait_for(lambda: scalar("SELECT cursor FROM monitoring.pull_targets WHERE server_id = :s", s=sid) == 5)
    # Never asked again for what it already has: each poll starts after the last cursor.
    asked = agent_endpoint.asked
    assert asked[0] == 0 and asked == sorted(asked) and 4 in asked
    assert scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = :s", s=sid) == 4


def test_a_refused_pull_is_recorded_and_moves_nothing(rpc, server, monitoring, agent_endpoint, scalar):
    agent_endpoint.add(message("system", server["id"], 0, BASE))
    rpc.call("monitoring_ingest", "set_pull_target", server["id"], "127.0.0.1", sealed("a-wrong-token"), 1,
             agent_endpoint.port)
    error = wait_for(lambda: scalar("SELECT last_error FROM monitoring.pull_targets"))
    assert "401" in error
    assert scalar("SELECT cursor FROM monitoring.pull_targets") == 0
    assert scalar("SELECT count(*) FROM monitoring.system_samples") == 0


def test_items_of_another_server_are_not_forwarded(rpc, server, monitoring, agent_endpoint, scalar):
    agent_endpoint.add(message("system", server["id"] + 1000, 0, BASE))
    agent_endpoint.add(message("system", server["id"], 0, BASE))
    rpc.call("monitoring_ingest", "set_pull_target", server["id"], "127.0.0.1", sealed(TOKEN), 1, agent_endpoint.port)
    wait_for(lambda: scalar("SELECT cursor FROM monitoring.pull_targets") == 2)
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples") == 1)
    assert scalar("SELECT server_id FROM monitoring.system_samples") == server["id"]

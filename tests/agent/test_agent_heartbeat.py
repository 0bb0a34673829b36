"""Heartbeats: what the agent sends, to a small receiver standing in for the
gateway (the end-to-end test sends them through the real gateway)."""
import json
import ssl
import subprocess
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent import AGENT_VERSION
from agent.config import AgentConfig
from agent.heartbeat import Heartbeat, running_versions

from agent_lab import wait_for


class Receiver:
    """Records every heartbeat POST; answers ``status``."""

    def __init__(self):
        self.received = []  # (path, headers, body)
        self.status = 202
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format, *args):  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_heartbeats_carry_the_token_and_the_running_components(tmp_path, receiver, agent_process):
    components = tmp_path / "components.json"
    components.write_text(json.dumps({"dns": "3.2.6", "monitor": AGENT_VERSION}))
    agent = agent_process(
        "heartbeat", server_id=12, agent_token="agent-secret", monitoring_url=receiver.url + "/",
        heartbeat_interval_seconds=0.1, spool_dir=str(tmp_path / "spool"), components_file=str(components),
    )
    wait_for(lambda: len(receiver.received) >= 3, what="three heartbeats")
    components.write_text(json.dumps({"monitor": AGENT_VERSION}))  # stop_pv_dns.sh removed its entry
    count = len(receiver.received)
    wait_for(lambda: len(receiver.received) >= count + 2, what="two more heartbeats")
    assert agent.stop() == 0
    # A restarted agent goes on counting where it stopped.
    agent_process(
        "heartbeat", server_id=12, agent_token="agent-secret", monitoring_url=receiver.url,
        heartbeat_interval_seconds=0.1, spool_dir=str(tmp_path / "spool"), components_file=str(components),
    )
    count = len(receiver.received)
    wait_for(lambda: len(receiver.received) >= count + 1, what="a heartbeat after the restart")

    paths = {path for path, _, _ in receiver.received}
    assert paths == {"/api/v2/monitoring/heartbeat"}
    assert all(headers["Authorization"] == "Bearer agent-secret" for _, headers, _ in receiver.received)
    bodies = [body for _, _, body in receiver.received]
    assert [body["seq"] for body in bodies] == list(range(1, len(bodies) + 1))
    assert {body["kind"] for body in bodies} == {"heartbeat"} and {body["server_id"] for body in bodies} == {12}
    assert bodies[0]["data"] == {"agent_version": AGENT_VERSION, "versions": {"dns": "3.2.6", "monitor": AGENT_VERSION}}
    assert bodies[-1]["data"]["versions"] == {"monitor": AGENT_VERSION}


def test_a_refused_or_unreachable_heartbeat_is_logged_and_the_next_one_still_goes(tmp_path, receiver, agent_process):
    receiver.status = 401
    agent = agent_process(
        "heartbeat", server_id=12, agent_token="revoked", monitoring_url=receiver.url,
        heartbeat_interval_seconds=0.1, spool_dir=str(tmp_path / "spool"), components_file=str(tmp_path / "none.json"),
    )
    wait_for(lambda: len(receiver.received) >= 2, what="heartbeats despite the 401")
    assert "heartbeat refused: HTTP 401" in agent.log()
    assert receiver.received[0][2]["data"]["versions"] == {}  # no versions file: nothing running
    receiver.close()
    wait_for(lambda: "heartbeat not delivered" in agent.log(), what="the unreachable receiver logged")
    assert "revoked" not in agent.log()
    assert agent.stop() == 0


def test_versions_file_that_is_not_a_mapping_reports_nothing(tmp_path, caplog):
    path = tmp_path / "components.json"
    path.write_text("[1, 2]")
    assert running_versions(str(path)) == {}
    path.write_text("{not json")
    assert running_versions(str(path)) == {}
    assert "cannot read" in caplog.text


def _self_signed(directory):
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


class Sequence:
    def __init__(self):
        self.value = 0

    def next_seq(self, kind):
        self.value += 1
        return self.value


def test_https_heartbeat_verifies_the_monitoring_api_against_the_bundles_ca(tmp_path, receiver):
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver.httpd.socket = context.wrap_socket(receiver.httpd.socket, server_side=True)
    url = receiver.url.replace("http:", "https:")

    def config(**values):
        return AgentConfig(dict({"server_id": 3, "agent_token": "t", "monitoring_url": url, "http_timeout_seconds": 5}, **values))

    assert Heartbeat(config(verify_ca=cert), Sequence()).send_once() == 202
    assert receiver.received[-1][2]["server_id"] == 3
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        Heartbeat(config(), Sequence()).send_once()  # the system's CAs do not know this certificate
    assert len(receiver.received) == 1

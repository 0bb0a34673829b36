"""Monitoring settings that act on a running agent: Verify CA both ways against a real TLS endpoint with a
self-signed certificate, and the system_monitoring/dns_monitoring toggles on the next heartbeat."""
import datetime
import json
import os
import ssl
import subprocess
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from sqlalchemy import text

from agent.config import AgentConfig
from agent.heartbeat import Heartbeat
from agent.spool import Spool
from services.provisioner.bundle import PROVISION_DIR, agent_config
from test_agent_end_to_end import create_server, gateway_url, ingest_consumer  # noqa: F401 (fixtures)
from agent_lab import free_port, send_queries, wait_for
from tests.tls import self_signed


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture
def https_gateway(tmp_path, settings, rpc):
    """The real gateway app over HTTPS with a self-signed certificate."""
    from gateway.app import create_app

    cert_path, key_path = self_signed(tmp_path)
    server = make_server("127.0.0.1", free_port(), create_app(settings, rpc=rpc), handler_class=QuietHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "https://127.0.0.1:%d" % server.server_port, str(cert_path)
    server.shutdown()
    server.server_close()


def _heartbeat(tmp_path, server_id, token, url, verify_ca):
    config = AgentConfig({"server_id": server_id, "agent_token": token, "monitoring_url": url,
                          "verify_ca": verify_ca, "spool_dir": str(tmp_path)})
    return Heartbeat(config, Spool(str(tmp_path / ("hb-%s.sqlite3" % verify_ca)), 1, server_id))


def test_verify_ca_on_refuses_a_self_signed_control_plane_and_off_accepts_it(tmp_path, rpc, admin, inventory,
                                                                             https_gateway):
    url, cert_path = https_gateway
    server, token = create_server(rpc, admin)
    # On: verified against the system's CAs, which do not know this certificate; a clear error, no crash.
    with pytest.raises(OSError) as refused:
        _heartbeat(tmp_path, server["id"], token, url, True).send_once()
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    stopping = threading.Event()
    beating = threading.Thread(target=_heartbeat(tmp_path, server["id"], token, url, True).run, args=(stopping,))
    beating.start()
    stopping.set()
    beating.join(10)
    assert not beating.is_alive()
    # On, with the certificate as the CA file: verified and accepted.
    assert _heartbeat(tmp_path, server["id"], token, url, cert_path).send_once() == 202
    # Off: not verified, accepted.
    assert _heartbeat(tmp_path, server["id"], token, url, False).send_once() == 202

    # pv_update.py run by hand on the server asks the same control plane the same way.
    config_path = tmp_path / "agent.json"
    for verify_ca, refused in ((True, True), (False, False)):
        config_path.write_text(json.dumps({"server_id": server["id"], "agent_token": token, "monitoring_url": url,
                                           "verify_ca": verify_ca}))
        done = subprocess.run([sys.executable, str(PROVISION_DIR / "pv_update.py"), "--config", str(config_path)],
                              capture_output=True, text=True, timeout=60)
        assert ("CERTIFICATE_VERIFY_FAILED" in done.stderr) is refused, done.stderr
        if not refused:  # through TLS to the API: it answers (here without an updater running: 503)
            assert "the control plane refused: 503" in done.stderr or done.returncode == 0, done.stderr

    # The bundle says what the setting says, both ways (off was written as null, which verified).
    for setting in (False, True):
        config = agent_config(server["id"], token, {"verify_ca": setting}, url, {})
        assert config["verify_ca"] is setting and AgentConfig(config).verify_ca is setting


def _samples_after(engine, server_id, kind, moment):
    table = {"system": "system_samples", "dns": "dns_periods"}[kind]
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM monitoring.%s WHERE server_id = :s AND collected_at > :m"
                                        % table), {"s": server_id, "m": moment}).scalar()


def _switched(path, **expected):
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    if all(state.get(k) == v for k, v in expected.items()):
        return datetime.datetime.fromtimestamp(os.stat(path).st_mtime, datetime.timezone.utc)
    return None


def test_monitoring_toggles_turn_the_running_agents_collectors_off_and_on(
        tmp_path, settings, engine, rpc, admin, inventory, ingest_consumer, gateway_url,  # noqa: F811
        agent_process, knot_factory):
    import pika

    server, token = create_server(rpc, admin)
    amqp = pika.URLParameters(settings.amqp_uri)
    dnstap_socket, spool = str(tmp_path / "dnstap.sock"), tmp_path / "spool"
    agent = agent_process(
        "all", server_id=server["id"], agent_token=token, monitoring_url=gateway_url, communication_type="push",
        rabbitmq={"host": amqp.host, "port": amqp.port, "user": amqp.credentials.username,
                  "password": amqp.credentials.password, "vhost": amqp.virtual_host},
        heartbeat_interval_seconds=0.3, dns_interval_seconds=0.3, system_interval_seconds=0.3,
        dnstap_socket=dnstap_socket, spool_dir=str(spool), components_file=str(tmp_path / "components.json"),
    )
    wait_for(lambda: os.path.exists(dnstap_socket), what="the agent's dnstap socket")
    knot = knot_factory(dnstap_socket, agent)
    switches = str(spool / "collect.json")
    wait_for(lambda: _switched(switches, system=True, dns=True), timeout=30, interval=0.1, what="switches on")
    wait_for(lambda: _samples_after(engine, server["id"], "system", datetime.datetime(2000, 1, 1,
                                                                                      tzinfo=datetime.timezone.utc)),
             timeout=30, interval=0.2, what="system samples while on")

    rpc.call("inventory", "update_settings", admin, {"monitoring": {"system_monitoring": False}})
    off_at = wait_for(lambda: _switched(switches, system=False, dns=True), timeout=30, interval=0.1,
                      what="system monitoring switched off on the agent")
    # DNS still counts: queries sent now and stored show that the pipeline moved past the switch.
    send_queries(knot, [("pvverify.test", "TXT", 3)])
    wait_for(lambda: _samples_after(engine, server["id"], "dns", off_at + datetime.timedelta(seconds=1)),
             timeout=30, interval=0.2, what="DNS periods after the switch")
    assert _samples_after(engine, server["id"], "system", off_at + datetime.timedelta(seconds=1)) == 0

    rpc.call("inventory", "update_settings", admin, {"monitoring": {"system_monitoring": True, "dns_monitoring": False}})
    on_at = wait_for(lambda: _switched(switches, system=True, dns=False), timeout=30, interval=0.1,
                     what="system on, DNS off on the agent")
    wait_for(lambda: _samples_after(engine, server["id"], "system", on_at + datetime.timedelta(seconds=1)),
             timeout=30, interval=0.2, what="system samples again")
    assert _samples_after(engine, server["id"], "dns", on_at + datetime.timedelta(seconds=1)) == 0

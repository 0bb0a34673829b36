"""STEWARD_QUEUE_TYPE=quorum against this machine's RabbitMQ: the agent path's queues are declared as
quorum queues and the ingest consumer stores through them; classic stays the default."""
import json
import subprocess
import sys
from urllib.parse import quote

import pytest
from kombu import Connection, Exchange

from scripts.sandbox import ensure_vhost
from shared.config import ConfigError
from shared.queues import durable_queue_arguments
from shared.schemas.agent import EXCHANGE, HEARTBEAT_QUEUE, STATS_QUEUE, stats_routing_key
from tests.conftest import ROOT
from tests.monitoring.helpers import child_env, message, wait_for

SERVER_ID = 4343


def test_classic_is_the_default_and_a_wrong_type_is_refused(monkeypatch):
    monkeypatch.delenv("STEWARD_QUEUE_TYPE", raising=False)
    assert durable_queue_arguments() == {}
    assert durable_queue_arguments("quorum") == {"x-queue-type": "quorum"}
    with pytest.raises(ConfigError, match="queue_type must be one of classic, quorum"):
        durable_queue_arguments("mirrored")


def test_the_consumer_stores_through_quorum_queues(settings, scalar, tmp_path):
    vhost = f"{Connection(settings.amqp_uri).virtual_host}-quorum"
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
    ensure_vhost(vhost)
    amqp_uri = settings.amqp_uri.rsplit("/", 1)[0] + "/" + quote(vhost, safe="")
    log = tmp_path / "consumer.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "services.monitoring_ingest.consumer", "--batch-ms", "50"],
                                   cwd=ROOT, env=dict(child_env(settings), STEWARD_AMQP_VHOST=vhost,
                                                      STEWARD_QUEUE_TYPE="quorum"),
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        def queue_types():
            # From the broker itself, not the management plugin's statistics (tests/conftest.py says why).
            listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type", "consumers",
                                     "--formatter", "json"], capture_output=True, text=True, check=True).stdout
            return {q["name"]: q["type"] for q in json.loads(listed or "[]")
                    if q.get("consumers", 0) or q["name"] == "monitoring.dead"}

        types = wait_for(lambda: process.poll() is None and (lambda t: len(t) == 3 and t)(queue_types()), timeout=60,
                         interval=0.5, what="the consumer on its queues")
        assert types == {STATS_QUEUE: "quorum", HEARTBEAT_QUEUE: "quorum", "monitoring.dead": "quorum"}, log.read_text()
        with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
            producer = connection.Producer(exchange=Exchange(EXCHANGE, type="topic", durable=True), serializer="json")
            for seq in range(1, 101):
                producer.publish(message("system", SERVER_ID, seq), routing_key=stats_routing_key("system", SERVER_ID),
                                 delivery_mode=2, user_id=connection.userid)
        wait_for(lambda: scalar(f"SELECT count(*) FROM monitoring.system_samples WHERE server_id = {SERVER_ID}") == 100,
                 timeout=30, interval=0.2, what="100 messages stored")
    finally:
        process.terminate()
        process.wait(30)
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)

"""SIGTERM to the ingest consumer in the middle of a batch, as a rolling update sends it: it stores
(or hands back to the queue) what it holds, exits 0 within the grace period, and no message is
lost or stored twice. The consumer runs in a vhost of its own, so no other consumer takes the batch."""
import signal
import subprocess
import sys
import time
from urllib.parse import quote

from kombu import Connection, Exchange

from scripts.sandbox import ensure_vhost
from shared.schemas.agent import EXCHANGE, STATS_QUEUE, stats_routing_key

from tests.conftest import ROOT
from .helpers import child_env, message, wait_for

# docker-compose.yml's stop_grace_period and k8s/'s terminationGracePeriodSeconds.
GRACE_SECONDS = 30
SERVER_ID = 4242
COUNT = 2000


def _queue(amqp_uri):
    """(messages ready, consumers) of the statistics queue."""
    with Connection(amqp_uri) as connection:
        try:
            _, ready, consumers = connection.default_channel.queue_declare(STATS_QUEUE, passive=True)
        except Exception:  # not declared yet
            return 0, 0
        return ready, consumers


def test_sigterm_during_a_batch_loses_nothing_and_exits_0_within_the_grace_period(settings, scalar, tmp_path):
    vhost = f"{Connection(settings.amqp_uri).virtual_host}-stopping"
    ensure_vhost(vhost)
    amqp_uri = settings.amqp_uri.rsplit("/", 1)[0] + "/" + quote(vhost, safe="")
    log = tmp_path / "consumer.log"
    with open(log, "wb") as output:
        # A long batch window: the messages sit in the consumer's hands when SIGTERM comes.
        process = subprocess.Popen(
            [sys.executable, "-m", "services.monitoring_ingest.consumer", "--batch-ms", "20000", "--batch-size", "20000"],
            cwd=ROOT, env=dict(child_env(settings), STEWARD_AMQP_VHOST=vhost), stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _queue(amqp_uri)[1] == 1 or process.poll() is not None, timeout=60, interval=0.2,
                 what="the consumer on its queue")
        assert process.poll() is None, log.read_text()[-3000:]
        with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
            producer = connection.Producer(exchange=Exchange(EXCHANGE, type="topic", durable=True), serializer="json")
            for seq in range(1, COUNT + 1):
                producer.publish(message("system", SERVER_ID, seq), routing_key=stats_routing_key("system", SERVER_ID),
                                 delivery_mode=2, user_id=connection.userid)
        # Nothing ready and nothing stored: every message is in the consumer's batch.
        wait_for(lambda: _queue(amqp_uri)[0] == 0, timeout=30, interval=0.2, what="the batch in the consumer's hands")
        assert scalar(f"SELECT count(*) FROM monitoring.system_samples WHERE server_id = {SERVER_ID}") == 0

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(GRACE_SECONDS)
        stopped_in = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stored = scalar(f"SELECT count(DISTINCT seq) FROM monitoring.system_samples WHERE server_id = {SERVER_ID}")
    rows = scalar(f"SELECT count(*) FROM monitoring.system_samples WHERE server_id = {SERVER_ID}")
    handed_back = _queue(amqp_uri)[0]
    print(f"\ningest consumer SIGTERM during a batch of {COUNT}: exit {status} after {stopped_in:.2f} s, "
          f"{stored} stored, {handed_back} handed back to the queue")
    assert status == 0, log.read_text()[-3000:]
    assert rows == stored and stored + handed_back == COUNT
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)

"""The compose test's clients: the CLI and the API through the published port, an agent as its setup bundle
configures it, a publisher of agent statistics, a counter of events, and client threads that record every
answer they get."""
import io
import json
import tarfile
import threading
import time
import uuid
from contextlib import redirect_stdout

import pika
import requests

from cli.main import main as steward
from tests.monitoring.helpers import message


def cli(stack, *argv):
    """The steward CLI on this machine against the stack's published port: (exit code, stdout)."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = steward(["--url", stack.url, "--token", stack.admin_token, *argv])
    return code, out.getvalue()


def api(stack, method, path, token=None, headers=None, **kwargs):
    headers = {"Authorization": f"Bearer {token or stack.admin_token}", **(headers or {})}
    return requests.request(method, f"{stack.url}/api/v2{path}", headers=headers, timeout=15, **kwargs)


def create_server(stack, prefix):
    """(name, response) of a create sent as the CLI sends it (cli/api.py): with an Idempotency-Key of its own,
    which lets the proxy send it again to the other gateway when the first one dies with the request. The test
    itself never repeats it, so what it counts is what the proxy and the gateways did."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    response = api(stack, "POST", "/servers", json={"name": name, "address": "198.18.1.1", "os": "ubuntu"},
                   headers={"Idempotency-Key": uuid.uuid4().hex})
    return name, response


class Agent:
    """A managed server's agent as the setup bundle configures it: its token and its RabbitMQ user."""

    def __init__(self, stack, server_id):
        response = api(stack, "GET", f"/servers/{server_id}/bundle")
        assert response.status_code == 200, response.text
        with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
            config = json.load(tar.extractfile(f"setup-{server_id}/config/agent.json"))
        self.stack, self.server_id = stack, server_id
        self.token, self.rabbitmq = config["agent_token"], config["rabbitmq"]
        self.seq = 0

    def heartbeat(self):
        """(seq, HTTP status) of the next heartbeat."""
        response = self.send_heartbeat()
        return self.seq, response.status_code

    def send_heartbeat(self):
        self.seq += 1
        body = message("heartbeat", self.server_id, self.seq)
        return requests.post(f"{self.stack.url}/api/v2/monitoring/heartbeat", json=body, timeout=15,
                             headers={"Authorization": f"Bearer {self.token}"})

    def connect(self):
        # The bundle names the broker as agents reach it (the admin setting rabbitmq.host/port).
        parameters = pika.ConnectionParameters(
            self.rabbitmq["host"], self.rabbitmq["port"], "/",
            pika.PlainCredentials(self.rabbitmq["user"], self.rabbitmq["password"]),
            connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10)
        connection = pika.BlockingConnection(parameters)
        channel = connection.channel()
        channel.confirm_delivery()
        return connection, channel


def stats_publisher(agent, stopping, confirmed):
    """Publishes system statistics with confirms until told to stop, reconnecting when the broker is away."""
    seq, connection = 0, None
    while not stopping.is_set():
        try:
            if connection is None or connection.is_closed:
                connection, channel = agent.connect()
            seq += 1
            body = json.dumps(message("system", agent.server_id, seq)).encode()
            channel.basic_publish("steward.agent", f"stats.system.{agent.server_id}", body,
                                  # As the agent does: RabbitMQ checks user_id against the connection's user.
                                  pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                                       user_id=agent.rabbitmq["user"]),
                                  mandatory=True)
            confirmed.append(seq)
        except (pika.exceptions.AMQPError, OSError):
            connection = None
            time.sleep(0.2)
    if connection is not None and connection.is_open:
        connection.close()


class EventCounter:
    """A queue of the test's own on a service's events, counted as a deduplicating consumer sees them: per fact
    (``identify``), how many distinct events (by the event's id) arrived. The outbox delivers at least once, so a
    relay killed between publish and marking the row sent publishes that event again, with the same id, which
    consumers drop; ``republished`` counts those, and a second *distinct* event for one fact is a real duplicate.
    """

    def __init__(self, stack, exchange, routing_key, identify):
        self.connection = pika.BlockingConnection(pika.URLParameters(stack.amqp_uri))
        self.channel = self.connection.channel()
        self.queue = f"compose-test-events-{uuid.uuid4().hex[:6]}"
        self.identify = identify
        self.channel.exchange_declare(exchange, "topic", durable=True)
        self.channel.queue_declare(self.queue, durable=True)
        self.channel.queue_bind(self.queue, exchange, routing_key)
        self.seen = {}
        self.event_ids = {}
        self.republished = 0

    def drain(self):
        while True:
            method, _, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.seen
            payload = json.loads(body)
            key, ids = self.identify(payload), self.event_ids.setdefault(self.identify(payload), set())
            if payload["id"] in ids:
                self.republished += 1
                continue
            ids.add(payload["id"])
            self.seen[key] = len(ids)

    def close(self):
        self.channel.queue_delete(self.queue)
        self.connection.close()


def poll_list(stack, stopping, samples):
    while not stopping.is_set():
        started = time.monotonic()
        try:
            status = api(stack, "GET", "/servers?per_page=5").status_code
        except requests.RequestException:
            status = 0
        samples.append((started, status))
        time.sleep(0.05)


def failure_window(samples, since):
    """(failed answers, seconds from the first to the last failed answer) of the list after ``since``."""
    failed = [at for at, status in samples if at >= since and status != 200]
    return len(failed), (failed[-1] - failed[0]) if failed else 0.0


class Traffic:
    """Client threads, each sending one kind of request in a loop until the block ends, and every answer they got:
    (kind, sent, answered, status, what a failed one said); status 0 for a request that got no answer (refused,
    reset, timed out)."""

    def __init__(self):
        self.stopping = threading.Event()
        self.answers = []
        self.threads = []

    def add(self, kind, send, pause=0.0):
        """A thread that calls ``send()`` (it returns the response) and waits ``pause`` seconds between calls."""
        def loop():
            while not self.stopping.is_set():
                sent = time.monotonic()
                try:
                    response = send()
                    status, said = response.status_code, response.text[:200]
                except requests.RequestException as exc:
                    status, said = 0, f"{type(exc).__name__}: {exc}"[:200]
                self.answers.append((kind, sent, time.monotonic(), status, said))
                time.sleep(pause)
        self.threads.append(threading.Thread(target=loop, name=f"traffic-{kind}"))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def count(self, kind, since=0.0, until=float("inf")):
        """How many requests of ``kind`` were sent between ``since`` and ``until`` (monotonic seconds)."""
        return sum(1 for k, sent, *_ in self.answers if k == kind and since <= sent <= until)

    def kinds(self):
        return sorted({kind for kind, *_ in self.answers})

    def failed(self, since=0.0):
        """Every answer that was not a 2xx: (kind, seconds after ``since`` it was sent, seconds waited, status, said)."""
        return [(kind, round(sent - since, 2), round(answered - sent, 2), status, said)
                for kind, sent, answered, status, said in self.answers if not 200 <= status < 300]

    def longest_wait(self):
        """(seconds, kind) of the slowest answer."""
        return max(((answered - sent, kind) for kind, sent, answered, *_ in self.answers), default=(0.0, None))

    def longest_gap(self):
        """(seconds, kind): the longest a kind of request went without a 2xx answer (between two of them)."""
        gaps = [(0.0, None)]
        for kind in self.kinds():
            answered = sorted(at for k, _, at, status, _ in self.answers if k == kind and 200 <= status < 300)
            gaps += [(later - earlier, kind) for earlier, later in zip(answered, answered[1:])]
        return max(gaps)

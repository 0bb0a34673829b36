"""The agent tests' lab: knotd with mod-dnstap on loopback, the agent as its own
process, and a RabbitMQ node of the tests' own for broker restarts."""
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

from tests.waiting import wait_for  # noqa: F401 (the agent tests and bench-agent import it from here)
from tests.ports import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZONE = """$ORIGIN test.
$TTL 300
@ SOA ns.test. hostmaster.test. 1 3600 900 604800 300
@ NS ns.test.
ns A 127.0.0.1
pvverify TXT "PVOK"
www A 192.0.2.1
www AAAA 2001:db8::1
mail MX 10 www.test.
"""
# Queries the tests send to knot, and the hits they must come out as.
PLAN = [
    ("pvverify.test", "TXT", 5),
    ("www.test", "A", 3),
    ("WWW.Test", "AAAA", 2),  # case differs from the zone: counted under the lower-case name
    ("mail.test", "MX", 1),
    ("missing.test", "A", 4),  # NXDOMAIN answers are queries too
]
EXPECTED_HITS = {
    ("pvverify.test.", "TXT"): 5,
    ("www.test.", "A"): 3,
    ("www.test.", "AAAA"): 2,
    ("mail.test.", "MX"): 1,
    ("missing.test.", "A"): 4,
}

KNOT_CONF = """server:
    rundir: {dir}
    listen: {address}@{port}
database:
    storage: {dir}
log:
  - target: stderr
    any: warning
mod-dnstap:
  - id: tap
    sink: {sink}
    log-queries: on
    log-responses: {log_responses}
    responses-with-queries: {log_responses}
template:
  - id: default
    storage: {dir}
    global-module: mod-dnstap/tap
zone:
  - domain: test.
    file: test.zone
"""


def _tcp_free(address, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True




def _stop(process, timeout=10):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class AgentProcess:
    """``python -m agent`` in its own process, as the managed server runs it."""

    def __init__(self, directory, python=sys.executable, env=None):
        self.directory = directory
        self.python = python
        self.env = env
        self.process = None
        self.log_path = os.path.join(directory, "agent.log")

    def start(self, mode="stats", **config):
        config_path = os.path.join(self.directory, "agent.json")
        with open(config_path, "w") as handle:
            json.dump(config, handle)
        env = dict(os.environ, **dict({"PYTHONPATH": REPO}, **(self.env or {})))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.python, "-m", "agent", "--config", config_path, mode], cwd=self.directory, env=env, stdout=log, stderr=log
            )
        return self

    def stop(self):
        if self.process is not None:
            _stop(self.process)
        return self.process.returncode if self.process else None

    def log(self):
        with open(self.log_path) as handle:
            return handle.read()

    def wait_for_knot(self, connections=1):
        """Until knotd's dnstap writer has connected: queries answered before that are not reported."""
        wait_for(lambda: self.log().count("dnstap writer connected") >= connections, what="knotd's dnstap connection")


class Knot:
    def __init__(self, directory, dnstap_socket, address="127.0.0.1", log_responses=False, file_sink=None):
        self.directory = directory
        self.dnstap_socket = dnstap_socket
        self.sink = file_sink or "unix:" + dnstap_socket  # a file: what knotd alone delivers, for bench-agent
        self.log_responses = log_responses
        self.address = address
        self.port = free_port(socket.SOCK_DGRAM, address)
        while not _tcp_free(address, self.port):  # knotd listens on both
            self.port = free_port(socket.SOCK_DGRAM, address)
        self.conf = os.path.join(directory, "knot.conf")
        self.process = None

    def start(self):
        with open(os.path.join(self.directory, "test.zone"), "w") as handle:
            handle.write(ZONE)
        with open(self.conf, "w") as handle:
            handle.write(KNOT_CONF.format(dir=self.directory, address=self.address, port=self.port, sink=self.sink,
                                          log_responses="on" if self.log_responses else "off"))
        self.log_path = os.path.join(self.directory, "knot.log")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(["knotd", "-c", self.conf], stdout=log, stderr=log)
        wait_for(self._answers, timeout=30, interval=0.1, what="knotd to load the zone")
        return self

    def _answers(self):
        if self.process.poll() is not None:
            with open(self.log_path) as log:
                raise AssertionError("knotd exited with %s:\n%s" % (self.process.returncode, log.read()))
        # knotc, not a DNS probe: a probe query would be counted among the test's hits.
        result = subprocess.run(["knotc", "-c", self.conf, "zone-status", "test."], capture_output=True, text=True)
        return result.returncode == 0 and "serial: 1" in result.stdout

    def stop(self):
        if self.process is not None:
            _stop(self.process)


class PrivateBroker:
    """A RabbitMQ node of the tests' own, so that it may be stopped and started (never the machine's)."""

    def __init__(self, directory):
        self.directory = directory
        for sub in ("mnesia", "log"):
            os.makedirs(os.path.join(directory, sub))
        self.port = free_port()
        self.node = "steward_agent_test_%d@localhost" % self.port
        config = os.path.join(directory, "rabbitmq.conf")
        with open(config, "w") as handle:
            handle.write("listeners.tcp.local = 127.0.0.1:%d\nloopback_users = none\n" % self.port)
        plugins = os.path.join(directory, "enabled_plugins")
        with open(plugins, "w") as handle:
            handle.write("[].\n")
        env_file = os.path.join(directory, "rabbitmq-env.conf")
        open(env_file, "w").close()
        # The Debian wrapper runs the node as the rabbitmq user.
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", directory], check=True)
        self.env = dict(
            os.environ,
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(free_port()),
            RABBITMQ_MNESIA_BASE=os.path.join(directory, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(directory, "log"),
            RABBITMQ_CONFIG_FILE=config,
            RABBITMQ_ENABLED_PLUGINS_FILE=plugins,
            RABBITMQ_CONF_ENV_FILE=env_file,
            RABBITMQ_PID_FILE=os.path.join(directory, "rabbit.pid"),
        )

    def ctl(self, *args):
        return subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node] + list(args), env=self.env, capture_output=True, text=True, timeout=90
        )

    def start(self):
        # DEVNULL: the detached node must not hold the test's pipes open.
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(self.env["RABBITMQ_PID_FILE"]), timeout=30, what="rabbitmq pid file")
        # `rabbitmqctl wait` returns once the node booted, or fails if it died.
        result = self.ctl("wait", "--timeout", "60", self.env["RABBITMQ_PID_FILE"])
        assert result.returncode == 0, result.stderr

    def stop(self):
        # With the pid file, `stop` returns only once the node's process is gone.
        result = self.ctl("stop", self.env["RABBITMQ_PID_FILE"])
        assert result.returncode == 0, result.stderr
        if os.path.exists(self.env["RABBITMQ_PID_FILE"]):  # the node removes it itself when it can
            os.unlink(self.env["RABBITMQ_PID_FILE"])

    @property
    def url(self):
        return "amqp://guest:guest@127.0.0.1:%d/%%2F" % self.port


def http_get(url, token=None, timeout=10):
    """(status, parsed JSON body) of a GET, also for error statuses."""
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def send_queries(knot, plan, tcp=False):
    """Send each (name, type, times) of ``plan`` to knot over UDP (or TCP); returns, per (fqdn, type),
    the moments just before the last query went out and just after its answer came back."""
    import dns.message
    import dns.query

    last = {}
    for name, qtype, times in plan:
        for _ in range(times):
            before = datetime.datetime.now(datetime.timezone.utc)
            ask = dns.query.tcp if tcp else dns.query.udp
            answer = ask(dns.message.make_query(name, qtype), knot.address, port=knot.port, timeout=3)
            after = datetime.datetime.now(datetime.timezone.utc)
            assert answer.id is not None
            last[(name.lower().rstrip(".") + ".", qtype)] = (before, after)
    return last


def unique(messages):
    """Messages once each: push is at least once (a publish whose confirm the broker's restart cut
    off is sent again), and the control plane stores a message once by its identity."""
    by_identity = {}
    for message in messages:
        identity = (message["server_id"], message["kind"], message["seq"])
        assert by_identity.setdefault(identity, message) == message, "two different messages share %s" % (identity,)
    return list(by_identity.values())


def dns_totals(messages):
    """Hits and last access per (name, type), and the total, over several ``dns`` messages."""
    hits, last_access, total = {}, {}, 0
    for message in unique(messages):
        if message["kind"] != "dns":
            continue
        total += message["data"]["total"]
        for record in message["data"]["records"]:
            key = (record["name"], record["type"])
            hits[key] = hits.get(key, 0) + record["hits"]
            moment = datetime.datetime.fromisoformat(record["last_access"])
            last_access[key] = max(moment, last_access.get(key, moment))
    return hits, last_access, total


def last_dns_seq(messages):
    """The newest DNS period's seq among ``messages`` (0 for none): periods close at the agent's interval."""
    return max((m["seq"] for m in messages if m["kind"] == "dns"), default=0)


def assert_contiguous(messages, kind):
    """Nothing lost: the kind's seq numbers run 1..n and its DNS periods touch."""
    of_kind = sorted((m for m in unique(messages) if m["kind"] == kind), key=lambda m: m["seq"])
    assert [m["seq"] for m in of_kind] == list(range(1, len(of_kind) + 1))
    if kind == "dns":
        for earlier, later in zip(of_kind, of_kind[1:]):
            assert later["data"]["period_start"] == earlier["collected_at"]
    return of_kind


class BrokerReader:
    """The control plane's side in tests: the exchange, a durable queue bound to stats.#, and reading it back."""

    def __init__(self, url, queue="steward-agent-test-stats"):
        import pika

        self.url = url
        self.queue = queue
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare("steward.agent", exchange_type="topic", durable=True)
        self.channel.queue_delete(queue)
        self.received = []  # (routing key, properties, message)

    def bind(self):
        self.channel.queue_declare(self.queue, durable=True)
        self.channel.queue_bind(self.queue, "steward.agent", routing_key="stats.#")

    def drain(self):
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return [message for _, _, message in self.received]
            self.received.append((method.routing_key, properties, json.loads(body)))

    def reconnect(self):
        import pika

        self.connection = pika.BlockingConnection(pika.URLParameters(self.url))
        self.channel = self.connection.channel()

    def close(self):
        if self.connection.is_open:
            self.channel.queue_delete(self.queue)
            self.connection.close()

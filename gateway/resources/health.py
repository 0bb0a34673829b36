"""Health: ``GET /healthz`` for load balancers and probes, ``GET /healthz/services`` for people with a token.

``/healthz`` answers from what a background sampler (``HealthProbe``, one per gateway process) last saw
on the broker through one long-lived connection: whether each service's RPC queue has a consumer,
and whether the ingest batch consumer consumes its queues and keeps up with them. A call costs no
broker connection and no RPC, so anyone may ask it as often as they like. It answers 503 when the
broker has not answered the sampler lately, a service has no replica, or the ingest consumer is gone
or its backlog has been growing for longer than ``max_backlog_seconds``.

``/healthz/services`` asks every service to answer (each checks its database) and needs a token.
"""
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import falcon
from amqp.exceptions import NotFound as QueueNotFound
from kombu import Connection

from shared.errors import StewardError
from shared.rpc import rpc_queue


class HealthProbe:
    """Samples the broker every ``interval`` seconds in a thread of its own (started in each process on first use).

    The backlog of an ingest queue is how long its ready messages have not gone down: reset whenever a
    sample finds the queue empty or shorter than the one before, so a consumer keeping up never ages
    it, and one that is stuck or too slow does, by the time it has fallen behind.
    """

    def __init__(self, amqp_uri, services, ingest_queues, interval=5.0, max_backlog_seconds=120.0,
                 clock=time.monotonic):
        self.amqp_uri = amqp_uri
        self.services, self.ingest_queues = list(services), list(ingest_queues)
        self.interval, self.max_backlog_seconds, self.clock = interval, max_backlog_seconds, clock
        self._lock = threading.Lock()
        self._sampled = threading.Event()
        self._pid = None
        self._last = None  # (when, {queue: (messages, consumers) or None when it does not exist})
        self._error = None
        self._backlog_since = {}
        self.probe_id = uuid.uuid4().hex[:8]
        self.connection_name = None

    def _ensure_started(self):
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():  # gunicorn forks workers: each samples for itself
                self._sampled.clear()
                # Named per process and per probe, so the broker's connection list tells them apart.
                self.connection_name = f"steward gateway health (pid {os.getpid()}, probe {self.probe_id})"
                threading.Thread(target=self._sample_forever, name="health-probe", daemon=True).start()
                self._pid = os.getpid()

    def _sample_forever(self):
        while True:
            try:
                with Connection(self.amqp_uri, connect_timeout=self.interval, transport_options={
                        "client_properties": {"connection_name": self.connection_name}}) as conn:
                    conn.connect()
                    channel = conn.channel()
                    while True:
                        found = {}
                        for queue in [rpc_queue(s) for s in self.services] + self.ingest_queues:
                            try:
                                declared = channel.queue_declare(queue=queue, passive=True)
                                found[queue] = (declared.message_count, declared.consumer_count)
                            except QueueNotFound:  # the broker closed the channel with the 404
                                found[queue] = None
                                channel = conn.channel()
                        self._record(found)
                        time.sleep(self.interval)
            except Exception as exc:  # the broker went away: say so, and connect again
                self._error = str(exc) or type(exc).__name__
                self._sampled.set()
                time.sleep(self.interval)

    def _record(self, found):
        now = self.clock()
        previous = self._last[1] if self._last else {}
        for queue in self.ingest_queues:
            messages = (found.get(queue) or (0, 0))[0]
            before = (previous.get(queue) or (0, 0))[0]
            if messages == 0 or messages < before:
                self._backlog_since.pop(queue, None)
            else:
                self._backlog_since.setdefault(queue, now)
        self._last, self._error = (now, found), None
        self._sampled.set()

    def report(self, first_sample_wait=5.0):
        """(healthy, what /healthz says): the last sample judged."""
        self._ensure_started()
        self._sampled.wait(first_sample_wait)
        now, last, problems = self.clock(), self._last, []
        fresh = last is not None and now - last[0] <= 3 * self.interval and self._error is None
        broker = {"reachable": fresh}
        if not fresh:
            broker["error"] = self._error or "no answer from the broker yet"
            problems.append("the message broker does not answer")
        found = last[1] if last else {}
        services = {}
        for name in self.services:
            replicas = (found.get(rpc_queue(name)) or (0, 0))[1] if fresh else 0
            services[name] = {"reachable": replicas > 0, "replicas": replicas}
            if fresh and not replicas:
                problems.append(f"service {name} has no running replica")
        ingest = {}
        for queue in self.ingest_queues:
            messages, consumers = (found.get(queue) or (0, 0)) if fresh else (None, 0)
            since = self._backlog_since.get(queue)
            backlog = round(now - since, 1) if fresh and since is not None else 0.0
            ingest[queue] = {"consumers": consumers, "messages": messages, "backlog_seconds": backlog}
            if fresh and not consumers:
                problems.append(f"nothing consumes {queue}: the ingest consumer is not running")
            elif backlog > self.max_backlog_seconds:
                problems.append(f"{queue} has been growing for {backlog:g} s: the ingest consumer is not keeping up")
        body = {"status": "degraded" if problems else "ok", "problems": problems, "broker": broker,
                "services": services, "ingest": ingest,
                "checked_seconds_ago": round(now - last[0], 1) if last else None}
        return not problems, body


class Health:
    """GET /healthz: the last sample of the broker, judged (no broker connection, no RPC per call)."""

    def __init__(self, health_probe):
        self.probe = health_probe

    def on_get(self, req, resp):
        healthy, resp.media = self.probe.report()
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503


class ServiceHealth:
    """GET /healthz/services (any user): the sample, and every service asked to answer (with its database)."""

    def __init__(self, rpc, services, health_probe, timeout=2.0):
        self.rpc = rpc
        self.services = services
        self.probe = health_probe
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(services)), thread_name_prefix="health")

    def _service(self, name):
        started = time.perf_counter()
        try:
            answer = self.rpc.call(name, "health", timeout=self.timeout)
            return {"reachable": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                    "database": (answer or {}).get("database")}
        except StewardError as exc:
            return {"reachable": False, "error": exc.message}

    def on_get(self, req, resp):
        healthy, body = self.probe.report()
        answers = dict(zip(self.services, self.pool.map(self._service, self.services)))
        for name, answer in answers.items():
            body["services"].setdefault(name, {}).update(answer)
            if not answer["reachable"] and f"service {name} has no running replica" not in body["problems"]:
                body["problems"].append(f"service {name} does not answer: {answer['error']}")
        healthy = healthy and all(answer["reachable"] for answer in answers.values())
        body["status"] = "ok" if healthy else "degraded"
        resp.media = body
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503

"""The Monitoring API: agents' heartbeats in, statistics and liveness out."""
import threading
import time
from datetime import datetime, timezone

import falcon
from marshmallow import ValidationError

from gateway.main_loop import defer_publish, wait_allowed
from gateway.resources import json_body, principal
from shared.authz import require_own_agent
from shared.errors import ServiceUnavailable, ValidationFailed
from shared.schemas.agent import (
    HEARTBEAT_BEHIND, MAX_HEARTBEAT_BYTES, Heartbeat, collected_at_problem, heartbeat_routing_key, load_message,
)


class HeartbeatCollection:
    """POST /monitoring/heartbeat: an agent's heartbeat, validated here and published with confirms.

    The gateway validates (rather than forwarding to a service) because this is
    the one hot path agents hit every 30 s: a confirmed publish is all it costs.
    It is stored as the token's server's, whatever else the body says.
    """

    def __init__(self, agent_publisher, inventory):
        self.publisher = agent_publisher
        self.schema = Heartbeat()
        self.switches = CollectorSwitches(inventory)

    def on_post(self, req, resp):
        if (req.content_length or 0) > MAX_HEARTBEAT_BYTES:
            raise falcon.HTTPContentTooLarge(description=f"a heartbeat has at most {MAX_HEARTBEAT_BYTES} bytes")
        body = json_body(req)
        try:
            # load_message takes the agent's canonical form without marshmallow; for any other
            # kind the Heartbeat schema says what is wrong.
            if isinstance(body, dict) and body.get("kind") == "heartbeat":
                heartbeat = load_message(body)
            else:
                heartbeat = self.schema.load(body)
        except ValidationError as exc:
            raise ValidationFailed("invalid heartbeat", exc.messages) from None
        agent = principal(req)
        require_own_agent(agent, heartbeat["server_id"])
        problem = collected_at_problem(heartbeat["collected_at"], datetime.now(timezone.utc), HEARTBEAT_BEHIND)
        if problem:
            raise ValidationFailed("invalid heartbeat", {"collected_at": [problem]})
        routing_key = heartbeat_routing_key(agent["server_id"])
        if not defer_publish(body, routing_key):  # on the worker's main loop, it publishes and then answers
            self.publisher.publish(body, routing_key)
        resp.media = {"accepted": True, "server_id": agent["server_id"], "seq": heartbeat["seq"]}
        collect = self.switches.current()
        if collect is not None:  # inventory away: the agent keeps what it was told last
            resp.media["collect"] = collect


class CollectorSwitches:
    """The monitoring settings' system_monitoring/dns_monitoring, asked of inventory at most every ``seconds`` per
    worker: every agent's heartbeat (each 30 s) carries them, so a toggle acts within a heartbeat and this cache."""

    def __init__(self, inventory, seconds=10.0, clock=time.monotonic):
        self.inventory = inventory
        self.seconds = seconds
        self.clock = clock
        self.known = None  # (asked at, switches)
        self.lock = threading.Lock()

    def current(self):
        with self.lock:
            known = self.known
        if known is not None and self.clock() - known[0] < self.seconds:
            return known[1]
        wait_allowed()  # an RPC: not on the worker's main loop (gateway/main_loop.py)
        try:
            switches = self.inventory.collector_switches()
        except ServiceUnavailable:
            return known[1] if known else None
        with self.lock:
            self.known = (self.clock(), switches)
        return switches


class _Monitoring:
    def __init__(self, monitoring):
        self.monitoring = monitoring


class ServerSystem(_Monitoring):
    def on_get(self, req, resp, server_id):
        resp.media = self.monitoring.system_series(principal(req), server_id, dict(req.params))


class ServerDns(_Monitoring):
    def on_get(self, req, resp, server_id):
        resp.media = self.monitoring.dns_series(principal(req), server_id, dict(req.params))


class ServerRecords(_Monitoring):
    def on_get(self, req, resp, server_id):
        resp.media = self.monitoring.record_last_access(principal(req), server_id, dict(req.params))


class ServerRecordHits(_Monitoring):
    def on_get(self, req, resp, server_id):
        resp.media = self.monitoring.record_hits(principal(req), server_id, dict(req.params))


class ServerLiveness(_Monitoring):
    def on_get(self, req, resp, server_id):
        resp.media = self.monitoring.server_liveness(principal(req), server_id, dict(req.params))


class ServerRetention(_Monitoring):
    def on_put(self, req, resp, server_id):
        resp.media = self.monitoring.set_retention_override(principal(req), server_id, json_body(req))


class RecordRps(_Monitoring):
    def on_get(self, req, resp):
        resp.media = self.monitoring.record_rps(principal(req), dict(req.params))


class DeadLetterCollection(_Monitoring):
    def on_get(self, req, resp):
        resp.media = self.monitoring.list_dead_letters(principal(req), dict(req.params))


class DeadLetterItem(_Monitoring):
    def on_get(self, req, resp, letter_id):
        resp.media = self.monitoring.get_dead_letter(principal(req), letter_id)

    def on_delete(self, req, resp, letter_id):
        self.monitoring.drop_dead_letter(principal(req), letter_id)
        resp.status = falcon.HTTP_204


class DeadLetterRetry(_Monitoring):
    def on_post(self, req, resp, letter_id):
        resp.media = self.monitoring.retry_dead_letter(principal(req), letter_id)

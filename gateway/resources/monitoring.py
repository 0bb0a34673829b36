"""The Monitoring API: agents' heartbeats in, statistics and liveness out."""
import falcon
from marshmallow import ValidationError

from gateway.resources import json_body, principal
from shared.errors import PermissionDenied, ValidationFailed
from shared.schemas.agent import Heartbeat, heartbeat_routing_key, load_message


class HeartbeatCollection:
    """POST /monitoring/heartbeat: an agent's heartbeat, validated here and published with confirms.

    The gateway validates (rather than forwarding to a service) because this is
    the one hot path agents hit every 30 s: a confirmed publish is all it costs.
    """

    agent_access = True

    def __init__(self, publisher):
        self.publisher = publisher
        self.schema = Heartbeat()

    def on_post(self, req, resp):
        body = json_body(req)
        try:
            # load_message takes the agent's canonical form without marshmallow; for any other
            # kind the Heartbeat schema says what is wrong.
            if isinstance(body, dict) and body.get("kind") == "heartbeat":
                load_message(body)
            else:
                self.schema.load(body)
        except ValidationError as exc:
            raise ValidationFailed("invalid heartbeat", exc.messages) from None
        caller = principal(req)
        if caller.get("scope") != "agent":
            raise PermissionDenied("heartbeats come from agents, with their server's agent token")
        if caller.get("server_id") != body["server_id"]:
            raise PermissionDenied("an agent token may only send its own server's heartbeats")
        self.publisher.publish(body, heartbeat_routing_key(body["server_id"]))
        resp.status = falcon.HTTP_202
        resp.media = {"accepted": True, "server_id": body["server_id"], "seq": body["seq"]}


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


class ServerLiveness(_Monitoring):
    def on_get(self, req, resp, server_id):
        resp.media = self.monitoring.server_liveness(principal(req), server_id, dict(req.params))


class ServerRetention(_Monitoring):
    def on_put(self, req, resp, server_id):
        resp.media = self.monitoring.set_retention_override(principal(req), server_id, json_body(req))


class RecordRps(_Monitoring):
    def on_get(self, req, resp):
        resp.media = self.monitoring.record_rps(principal(req), dict(req.params))

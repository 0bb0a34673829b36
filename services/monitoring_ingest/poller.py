"""Pull mode: fetch statistics from agents that serve them, into the same pipeline.

Each pull-mode server has a row in ``pull_targets``: its address and port,
its agent token sealed with the deployment's SECRET_KEY (handed over by the
provisioner through the ``set_pull_target`` RPC when it builds the bundle),
its interval and the cursor reached. A poll takes the row with ``FOR UPDATE
SKIP LOCKED`` (so replicas share the work and never poll one server twice at
once), asks ``GET /v1/stats?after=<cursor>&limit=<n>``, publishes each item
to ``steward.agent`` exactly as a push-mode agent would (the batch consumer
stores it) and moves the cursor only after the broker confirmed them all.
"""
import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta

from marshmallow import ValidationError
from sqlalchemy import text

from shared.schemas.agent import PullPage, heartbeat_routing_key, stats_routing_key

log = logging.getLogger("monitoring_ingest.poller")

PAGE_LIMIT = 500
MAX_PAGES_PER_POLL = 20


def http_fetch(url, token, timeout=10.0):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def routing_key(item):
    if item.get("kind") == "heartbeat":
        return heartbeat_routing_key(item.get("server_id"))
    return stats_routing_key(item.get("kind"), item.get("server_id"))


class Poller:
    def __init__(self, connection, secret_box, publish, fetch=http_fetch):
        self.connection = connection
        self.box = secret_box
        self.publish = publish  # (item dict, routing_key) -> None, returns once the broker confirmed
        self.fetch = fetch

    def due(self, now, limit=20):
        return self.connection.execute(text("""
            SELECT server_id, address, port, token_sealed, interval_seconds, cursor FROM monitoring.pull_targets
            WHERE next_poll_at <= :now ORDER BY next_poll_at LIMIT :limit FOR UPDATE SKIP LOCKED
        """), {"now": now, "limit": limit}).all()

    def poll(self, target, now):
        """Fetch everything after the target's cursor; returns how many items were forwarded."""
        token = self.box.open(target.token_sealed)
        host = f"[{target.address}]" if ":" in target.address else target.address
        cursor, forwarded, error = target.cursor, 0, None
        try:
            for _ in range(MAX_PAGES_PER_POLL):
                page = PullPage().load(self.fetch(f"http://{host}:{target.port}/v1/stats?after={cursor}&limit={PAGE_LIMIT}",
                                                  token))
                for item in page["items"]:
                    if item.get("server_id") != target.server_id:
                        # An agent speaks for its own server only; the consumer would also refuse it.
                        log.warning("pulled item of another server dropped", extra={"server_id": target.server_id})
                        continue
                    self.publish(item, routing_key(item))
                    forwarded += 1
                if page["next_cursor"] <= cursor or not page["items"]:
                    cursor = max(cursor, page["next_cursor"])
                    break
                cursor = page["next_cursor"]
        except (OSError, urllib.error.URLError, ValueError, ValidationError) as exc:
            error = str(exc)[:500]
            log.warning("pull failed", extra={"server_id": target.server_id, "error": error})
        self.connection.execute(text("""
            UPDATE monitoring.pull_targets SET cursor = :cursor, last_polled_at = :now, last_error = :error,
                next_poll_at = :next WHERE server_id = :server_id
        """), {"cursor": cursor, "now": now, "error": error, "server_id": target.server_id,
               "next": now + timedelta(seconds=target.interval_seconds)})
        return forwarded

    def poll_due(self, now):
        return {target.server_id: self.poll(target, now) for target in self.due(now)}

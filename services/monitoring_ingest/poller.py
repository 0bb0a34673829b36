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
import logging
from datetime import timedelta

import requests
from marshmallow import ValidationError
from sqlalchemy import delete, text, update
from sqlalchemy.dialects.postgresql import insert

from services.monitoring_ingest.models import PullTarget
from shared.schemas.agent import PULL_PORT, PullPage, routing_key

log = logging.getLogger("monitoring_ingest.poller")

PAGE_LIMIT = 500
MAX_PAGES_PER_POLL = 20


def http_fetch(url, token, timeout=10.0):
    response = requests.get(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                            timeout=timeout)
    response.raise_for_status()
    return response.json()


def set_target(connection, box, server_id, address, agent_token, interval_seconds=60, port=PULL_PORT):
    """Poll this server from now on (or with new details); its agent token is kept sealed with ``box``."""
    values = {"address": address, "port": int(port), "token_sealed": box.seal(agent_token),
              "interval_seconds": max(1, int(interval_seconds))}
    connection.execute(insert(PullTarget).values(server_id=server_id, **values).on_conflict_do_update(
        index_elements=["server_id"], set_=values))
    return {"server_id": server_id, "address": address, "port": values["port"],
            "interval_seconds": values["interval_seconds"]}


def readdress_target(connection, server_id, address):
    """Poll a pull-mode server at its new address (nothing when it is not polled)."""
    connection.execute(update(PullTarget).where(PullTarget.server_id == server_id, PullTarget.address != address)
                       .values(address=address))


def remove_target(connection, server_id):
    connection.execute(delete(PullTarget).where(PullTarget.server_id == server_id))


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
                    self.publish(item, routing_key(item.get("kind"), target.server_id))
                    forwarded += 1
                if page["next_cursor"] <= cursor or not page["items"]:
                    cursor = max(cursor, page["next_cursor"])
                    break
                cursor = page["next_cursor"]
        except (OSError, requests.RequestException, ValueError, ValidationError) as exc:
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

import threading
import time

import falcon

from gateway.resources import json_body, principal, send_unless_unchanged
from shared.errors import ServiceUnavailable

# A delete first uninstalls over SSH (every component, the agent, its broker user): seconds on a quiet
# server, more on a busy one, so it waits longer than the usual call's timeout.
CLEANUP_SECONDS = 60


def merge_fleet_status(rows, status):
    """Requests come from monitoring-ingest; a server it never heard from keeps inventory's values.

    State and versions are inventory's stored copy of what monitoring-ingest decided (its
    ``server_state_changed`` and ``server_versions_reported`` events), so that the row and
    the list's ``state`` filter read one thing and always agree.
    """
    for row in rows:
        known = status.get(str(row["id"]))
        if known is not None:
            row["requests"], row["requests_status"] = known["requests"], known["requests_status"]


def add_fleet_status(monitoring, rows):
    """Liveness, requests and running versions come from monitoring-ingest: one call for all rows."""
    if monitoring is None or not rows:
        return
    try:
        status = monitoring.fleet_status([row["id"] for row in rows])
    except ServiceUnavailable:  # the servers still show, with inventory's view, while monitoring is away
        status = {}
    merge_fleet_status(rows, status)


class FleetStatusCache:
    """The list's liveness columns, kept for ``seconds`` per server in this worker process.

    ``requests`` counts the heartbeats of the last two minutes (one each 30 s) and
    a server goes down after 90 s of silence, so answers a second or two old say
    the same; asking monitoring-ingest for every page was a third of the list's
    CPU. 0 turns it off. One server's own page (ServerItem) always asks.

    A client that wants a heartbeat on screen at once (the web console) says so
    with ``Cache-Control: max-age`` (or ``no-cache``): its rows are then at most
    that old, but never younger than ``fresh_seconds``, so many consoles on one
    page still cost one call per ``fresh_seconds``. Only those requests pay for it;
    the list's other callers are served as before.
    """

    def __init__(self, monitoring, seconds, fresh_seconds=0.5, clock=time.monotonic):
        self.monitoring = monitoring
        self.seconds = seconds
        self.fresh_seconds = min(fresh_seconds, seconds)
        self.clock = clock
        self.known = {}  # server id -> (asked at, what monitoring said, or None: never heard of it)
        self.lock = threading.Lock()

    def add(self, rows, max_age=None):
        """Merges the liveness into ``rows``; ``max_age``: the oldest answer the client accepts (None: any)."""
        seconds = self.seconds if max_age is None else min(self.seconds, max(max_age, self.fresh_seconds))
        if seconds <= 0 or self.monitoring is None:
            return add_fleet_status(self.monitoring, rows)
        now = self.clock()
        with self.lock:
            cached = {row["id"]: self.known.get(row["id"]) for row in rows}
        stale = [server_id for server_id, entry in cached.items() if entry is None or now - entry[0] > seconds]
        if stale:
            try:
                fresh = self.monitoring.fleet_status(stale)
            except ServiceUnavailable:  # the last answer (or inventory's view) meanwhile; asked again next time
                fresh = None
            if fresh is not None:
                with self.lock:
                    if len(self.known) > 100_000:  # servers deleted long ago
                        self.known.clear()
                    for server_id in stale:
                        cached[server_id] = self.known[server_id] = (now, fresh.get(str(server_id)))
        merge_fleet_status(rows, {str(k): v[1] for k, v in cached.items() if v is not None and v[1] is not None})


def requested_max_age(cache_control):
    """The age in seconds a request's Cache-Control accepts: ``max-age=N``, or 0 for ``no-cache``; None when it
    says neither. A directive that does not parse is ignored, as RFC 9111 asks."""
    ages = []
    for directive in (cache_control or "").lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name == "no-cache":
            ages.append(0)
        elif name == "max-age" and value.strip().strip('"').isdigit():
            ages.append(int(value.strip().strip('"')))
    return min(ages) if ages else None


class ServerCollection:
    def __init__(self, inventory, monitoring, fleet_status_cache_seconds, fleet_status_fresh_seconds=0.5):
        self.inventory = inventory
        self.status = FleetStatusCache(monitoring, fleet_status_cache_seconds, fleet_status_fresh_seconds)

    def on_get(self, req, resp):
        """The list; ``Cache-Control: max-age=N`` (or ``no-cache``) asks for liveness columns at most N s old."""
        page = self.inventory.list_servers(principal(req), dict(req.params))
        self.status.add(page["items"], requested_max_age(req.get_header("Cache-Control")))
        send_unless_unchanged(req, resp, page)

    def on_post(self, req, resp):
        resp.media = self.inventory.create_server(principal(req), json_body(req))


class ServerItem:
    def __init__(self, inventory, provisioner, monitoring):
        self.inventory = inventory
        self.provisioner = provisioner
        self.monitoring = monitoring

    def on_get(self, req, resp, server_id):
        server = self.inventory.get_server(principal(req), server_id)
        add_fleet_status(self.monitoring, [server])
        resp.media = server

    def on_patch(self, req, resp, server_id):
        resp.media = self.inventory.update_server(principal(req), server_id, json_body(req))

    def on_delete(self, req, resp, server_id):
        """First removes what Steward installed on the server (best effort), then the record.

        204 when there was nothing to remove from the server; otherwise 200 with what
        was removed and what could not be (the record is deleted either way).
        """
        try:
            cleanup = self.provisioner.waiting(CLEANUP_SECONDS).cleanup_server(principal(req), server_id)
        except ServiceUnavailable as exc:
            cleanup = {"server_id": server_id, "uninstalled": False, "rabbitmq_user_removed": False,
                       "nothing_installed": False, "problems": [f"cleanup on the server skipped: {exc.message}"]}
        deleted = self.inventory.delete_server(principal(req), server_id)
        if cleanup.pop("nothing_installed", False):
            resp.status = falcon.HTTP_204
            return
        resp.media = {"deleted": deleted, "cleanup": cleanup}

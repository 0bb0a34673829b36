import falcon

from gateway.resources import json_body, no_content, principal
from shared.errors import ServiceUnavailable


def merge_fleet_status(rows, status):
    """What monitoring-ingest knows wins; a server it never heard from keeps inventory's values.

    Liveness maps onto the list's states: down stays down; up is running when the
    last heartbeat reported a running component, stopped when it reported none.
    """
    for row in rows:
        known = status.get(str(row["id"]))
        if known is None:
            continue
        row["requests"], row["requests_status"] = known["requests"], known["requests_status"]
        if known["state"] == "down":
            row["state"] = "down"
        elif known["state"] == "up":
            row["versions"] = known["versions"]
            row["state"] = "running" if known["versions"] else "stopped"


def add_fleet_status(monitoring, rows):
    """Liveness, requests and running versions come from monitoring-ingest: one call for all rows."""
    if monitoring is None or not rows:
        return
    try:
        status = monitoring.fleet_status([row["id"] for row in rows])
    except ServiceUnavailable:  # the servers still show, with inventory's view, while monitoring is away
        status = {}
    merge_fleet_status(rows, status)


class ServerCollection:
    def __init__(self, inventory, monitoring=None):
        self.inventory = inventory
        self.monitoring = monitoring

    def on_get(self, req, resp):
        page = self.inventory.list_servers(principal(req), dict(req.params))
        add_fleet_status(self.monitoring, page["items"])
        resp.media = page

    def on_post(self, req, resp):
        server = self.inventory.create_server(principal(req), json_body(req))
        resp.media = server
        resp.status = falcon.HTTP_201
        resp.location = f"{req.path}/{server['id']}"


class ServerItem:
    def __init__(self, inventory, monitoring=None):
        self.inventory = inventory
        self.monitoring = monitoring

    def on_get(self, req, resp, server_id):
        server = self.inventory.get_server(principal(req), server_id)
        add_fleet_status(self.monitoring, [server])
        resp.media = server

    def on_patch(self, req, resp, server_id):
        resp.media = self.inventory.update_server(principal(req), server_id, json_body(req))

    def on_delete(self, req, resp, server_id):
        self.inventory.delete_server(principal(req), server_id)
        no_content(resp)

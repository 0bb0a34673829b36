import falcon

from gateway.resources import json_body, no_content, principal


class ServerCollection:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_get(self, req, resp):
        resp.media = self.inventory.list_servers(principal(req), dict(req.params))

    def on_post(self, req, resp):
        server = self.inventory.create_server(principal(req), json_body(req))
        resp.media = server
        resp.status = falcon.HTTP_201
        resp.location = f"{req.path}/{server['id']}"


class ServerItem:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_get(self, req, resp, server_id):
        resp.media = self.inventory.get_server(principal(req), server_id)

    def on_patch(self, req, resp, server_id):
        resp.media = self.inventory.update_server(principal(req), server_id, json_body(req))

    def on_delete(self, req, resp, server_id):
        self.inventory.delete_server(principal(req), server_id)
        no_content(resp)

import falcon

from gateway.resources import json_body, no_content, principal
from shared.errors import ValidationFailed


class UserCollection:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_get(self, req, resp):
        resp.media = self.inventory.list_users(principal(req))

    def on_post(self, req, resp):
        resp.media = self.inventory.create_user(principal(req), json_body(req))
        resp.status = falcon.HTTP_201


class UserItem:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_get(self, req, resp, user_id):
        resp.media = self.inventory.get_user(principal(req), user_id)

    def on_patch(self, req, resp, user_id):
        resp.media = self.inventory.update_user(principal(req), user_id, json_body(req))

    def on_delete(self, req, resp, user_id):
        self.inventory.delete_user(principal(req), user_id)
        no_content(resp)


class TokenCollection:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_get(self, req, resp):
        unknown = set(req.params) - {"user"}
        if unknown:
            raise ValidationFailed("invalid query", {name: ["unknown field"] for name in sorted(unknown)})
        resp.media = self.inventory.list_tokens(principal(req), req.get_param("user"))

    def on_post(self, req, resp):
        resp.media = self.inventory.create_token(principal(req), json_body(req))
        resp.status = falcon.HTTP_201


class TokenItem:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_delete(self, req, resp, token_id):
        self.inventory.delete_token(principal(req), token_id)
        no_content(resp)

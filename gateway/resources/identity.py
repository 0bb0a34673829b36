from gateway.resources import json_body, principal
from shared.crypto import API_TOKEN


class UserCollection:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_get(self, req, resp):
        resp.media = self.inventory.list_users(principal(req))

    def on_post(self, req, resp):
        resp.media = self.inventory.create_user(principal(req), json_body(req))


class UserItem:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_get(self, req, resp, user_id):
        resp.media = self.inventory.get_user(principal(req), user_id)

    def on_patch(self, req, resp, user_id):
        resp.media = self.inventory.update_user(principal(req), user_id, json_body(req))

    def on_delete(self, req, resp, user_id):
        self.inventory.delete_user(principal(req), user_id)


class TokenCollection:
    def __init__(self, inventory, secret_box):
        self.inventory = inventory
        self.secret_box = secret_box

    def on_get(self, req, resp):
        resp.media = self.inventory.list_tokens(principal(req), dict(req.params))

    def on_post(self, req, resp):
        created = self.inventory.create_token(principal(req), json_body(req))
        resp.media = dict(created, token=self.secret_box.open_sealed(API_TOKEN, created["token"]))


class TokenItem:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_delete(self, req, resp, token_id):
        self.inventory.delete_token(principal(req), token_id)

from gateway.resources import json_body, principal


class Settings:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_get(self, req, resp):
        resp.media = self.inventory.get_settings(principal(req))

    def on_patch(self, req, resp):
        resp.media = self.inventory.update_settings(principal(req), json_body(req))


class RabbitMQTest:
    def __init__(self, inventory):
        self.inventory = inventory

    def on_post(self, req, resp):
        resp.media = self.inventory.test_rabbitmq(principal(req), json_body(req))

"""Notifications: channels, rules, templates and the delivery log (the notifier service owns them)."""
from gateway.resources import json_body, principal


class ChannelCollection:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_get(self, req, resp):
        resp.media = self.notifier.list_channels(principal(req))

    def on_post(self, req, resp):
        resp.media = self.notifier.create_channel(principal(req), json_body(req))


class ChannelItem:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_get(self, req, resp, channel_id):
        resp.media = self.notifier.get_channel(principal(req), channel_id)

    def on_patch(self, req, resp, channel_id):
        resp.media = self.notifier.update_channel(principal(req), channel_id, json_body(req))

    def on_delete(self, req, resp, channel_id):
        self.notifier.delete_channel(principal(req), channel_id)


class ChannelTest:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_post(self, req, resp, channel_id):
        resp.media = self.notifier.test_channel(principal(req), channel_id)


class RuleCollection:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_get(self, req, resp):
        resp.media = self.notifier.list_rules(principal(req))

    def on_post(self, req, resp):
        resp.media = self.notifier.create_rule(principal(req), json_body(req))


class RuleItem:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_get(self, req, resp, rule_id):
        resp.media = self.notifier.get_rule(principal(req), rule_id)

    def on_patch(self, req, resp, rule_id):
        resp.media = self.notifier.update_rule(principal(req), rule_id, json_body(req))

    def on_delete(self, req, resp, rule_id):
        self.notifier.delete_rule(principal(req), rule_id)


class TemplateCollection:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_get(self, req, resp):
        resp.media = self.notifier.list_templates(principal(req))

    def on_post(self, req, resp):
        resp.media = self.notifier.set_template(principal(req), json_body(req))


class TemplateItem:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_delete(self, req, resp, template_id):
        self.notifier.delete_template(principal(req), template_id)


class DeliveryCollection:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_get(self, req, resp):
        resp.media = self.notifier.list_deliveries(principal(req), dict(req.params))


class DeliveryItem:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_get(self, req, resp, delivery_id):
        resp.media = self.notifier.get_delivery(principal(req), delivery_id)


class DeliveryRetry:
    def __init__(self, notifier):
        self.notifier = notifier

    def on_post(self, req, resp, delivery_id):
        resp.media = self.notifier.retry_delivery(principal(req), delivery_id)

"""Notification API contracts: channels, rules, templates and the delivery log.

A channel's ``settings`` depend on its ``kind``; each kind has its schema
below (``CHANNEL_SETTINGS``), and the notifier validates against it.
"""
from marshmallow import Schema, fields, validate

from shared.events import CATALOG
from shared.schemas import StrictSchema
from shared.schemas.fields import Id, Secret, display_name

CHANNEL_KINDS = ("email", "webhook", "chat")
SEVERITIES = ("info", "warning", "critical")
DELIVERY_STATUSES = ("collecting", "pending", "delivered", "dead")
# Progress and bookkeeping events are too chatty to notify; every other catalog event may be.
NOTIFIABLE_EVENTS = tuple(name for name, kind in CATALOG.items() if kind.notifiable)
# Templates exist for each notifiable event, for the notifier's own "a server is flapping"
# notice, and for the digest that replaces a burst of messages.
TEMPLATE_EVENTS = NOTIFIABLE_EVENTS + ("server_flapping", "digest")

_name = display_name(64)
_http_url = validate.URL(schemes={"http", "https"}, require_tld=False)


class EmailSettings(StrictSchema):
    host = fields.String(required=True, validate=validate.Length(min=1, max=253))
    port = fields.Integer(load_default=587, validate=validate.Range(1, 65535))
    starttls = fields.Boolean(load_default=True, metadata={"description": "Upgrade the connection with STARTTLS"})
    username = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=256))
    password = Secret(allow_none=True, load_default=None, validate=validate.Length(max=1024))
    sender = fields.Email(required=True, metadata={"description": "From address"})
    recipients = fields.List(fields.Email(), required=True, validate=validate.Length(min=1, max=100))
    password_set = fields.Boolean(dump_only=True)


class WebhookSettings(StrictSchema):
    url = fields.String(required=True, validate=_http_url)
    secret = Secret(required=True, validate=validate.Length(min=16, max=256),
                    metadata={"description": "Shared secret for the X-Steward-Signature HMAC"})
    secret_set = fields.Boolean(dump_only=True)


class ChatSettings(StrictSchema):
    url = Secret(required=True, validate=_http_url,
                 metadata={"description": "Incoming-webhook URL (a credential: stored sealed, never shown)"})
    payload_template = fields.String(
        allow_none=True, load_default=None, validate=validate.Length(max=4000),
        metadata={"description": "Jinja template of the JSON body; `text` is the message. Default: "
                                 "Slack's {\"text\": ...}. Telegram: {\"chat_id\": \"ID\", \"text\": {{ text|tojson }}}"},
    )
    url_set = fields.Boolean(dump_only=True)


CHANNEL_SETTINGS = {"email": EmailSettings, "webhook": WebhookSettings, "chat": ChatSettings}
# The write-only field of each kind that is sealed at rest.
CHANNEL_SECRET = {"email": "password", "webhook": "secret", "chat": "url"}
# What the gateway seals in a channel's settings for the broker: a change does not say its channel's kind, so
# every kind's secret field (a webhook's URL too, which is no secret but shares its name with a chat's).
SEALED_SETTINGS = tuple(sorted(set(CHANNEL_SECRET.values())))


class ChannelCreate(StrictSchema):
    name = fields.String(required=True, validate=_name)
    kind = fields.String(required=True, validate=validate.OneOf(CHANNEL_KINDS))
    enabled = fields.Boolean(load_default=True)
    settings = fields.Dict(required=True, metadata={
        "description": "email: host, port, starttls, username, password, sender, recipients; "
                       "webhook: url, secret; chat: url, payload_template", "secret_keys": SEALED_SETTINGS})


class ChannelUpdate(StrictSchema):
    name = fields.String(validate=_name)
    enabled = fields.Boolean()
    settings = fields.Dict(metadata={"description": "Fields to change; secrets left out stay as they are",
                                     "secret_keys": SEALED_SETTINGS})


class Channel(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    enabled = fields.Boolean()
    settings = fields.Dict(metadata={"description": "Without secrets, which show only as *_set flags"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ChannelTestResult(Schema):
    ok = fields.Boolean()
    message = fields.String()
    latency_ms = fields.Float()


class RuleCreate(StrictSchema):
    name = fields.String(required=True, validate=_name)
    enabled = fields.Boolean(load_default=True)
    event_types = fields.List(fields.String(validate=validate.OneOf(NOTIFIABLE_EVENTS)), load_default=list,
                              metadata={"description": "Empty: every notifiable event"})
    min_severity = fields.String(load_default="info", validate=validate.OneOf(SEVERITIES))
    server_ids = fields.List(Id(), load_default=list,
                             metadata={"description": "Empty: every server"})
    server_search = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=128),
                                  metadata={"description": "Only servers whose name contains this (any case)"})
    channel_ids = fields.List(Id(), required=True, validate=validate.Length(min=1, max=100))


class Rule(Schema):
    id = fields.Integer()
    name = fields.String()
    enabled = fields.Boolean()
    event_types = fields.List(fields.String())
    min_severity = fields.String()
    server_ids = fields.List(fields.Integer())
    server_search = fields.String(allow_none=True)
    channel_ids = fields.List(fields.Integer())
    created_at = fields.DateTime()


class TemplateSet(StrictSchema):
    event_type = fields.String(required=True, validate=validate.OneOf(TEMPLATE_EVENTS))
    channel_kind = fields.String(required=True, validate=validate.OneOf(CHANNEL_KINDS))
    subject = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    body = fields.String(required=True, validate=validate.Length(min=1, max=20000))


class Template(Schema):
    id = fields.Integer(allow_none=True, metadata={"description": "Set for an operator's override, null for a default"})
    event_type = fields.String()
    channel_kind = fields.String()
    subject = fields.String()
    body = fields.String()
    overridden = fields.Boolean()


class DeliveryQuery(StrictSchema):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    channel_id = Id()
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))


class Attempt(Schema):
    started_at = fields.DateTime()
    duration_ms = fields.Float()
    ok = fields.Boolean()
    result = fields.String()


class Delivery(Schema):
    id = fields.Integer()
    channel_id = fields.Integer(allow_none=True)
    channel_name = fields.String()
    channel_kind = fields.String()
    status = fields.String()
    created_at = fields.DateTime()
    due_at = fields.DateTime()
    delivered_at = fields.DateTime(allow_none=True)
    item_count = fields.Integer()
    event_types = fields.List(fields.String())
    server_ids = fields.List(fields.Integer())
    subject = fields.String(allow_none=True)
    attempts = fields.Integer(metadata={"description": "Attempts since the last manual retry"})
    last_error = fields.String(allow_none=True)


class DeliveryDetail(Delivery):
    body = fields.String(allow_none=True)
    attempt_log = fields.List(fields.Nested(Attempt))

"""Admin settings: the defaults new managed servers take.

Each section validates on input (every field optional in a PATCH) and dumps
without its secrets, which show only as ``<name>_set`` flags.
"""
from marshmallow import Schema, fields, validate

from shared.components import INSTALLABLE
from shared.schemas import StrictSchema
from shared.schemas.fields import IPAddress, Secret


class MonitoringSettings(StrictSchema):
    default_api_ip = IPAddress(allow_none=True, load_default=None, metadata={"description": "Default monitoring API IP"})
    verify_ca = fields.Boolean(load_default=False)
    communication_type = fields.String(load_default="push", validate=validate.OneOf(["push", "pull"]))
    system_monitoring = fields.Boolean(load_default=True)
    system_interval_seconds = fields.Integer(load_default=60, validate=validate.Range(5, 86400))
    dns_monitoring = fields.Boolean(load_default=True)
    dns_interval_seconds = fields.Integer(load_default=60, validate=validate.Range(5, 86400))
    raw_retention_minutes = fields.Integer(load_default=1440, validate=validate.Range(1, 525600))
    aggregated_retention_days = fields.Integer(load_default=90, validate=validate.Range(1, 3650))


# One token per component the updater updates.
RepositoryTokens = type("RepositoryTokens", (StrictSchema,), {c: Secret(allow_none=True) for c in INSTALLABLE})


class UpdateSettings(StrictSchema):
    api_timeout_ms = fields.Integer(load_default=30000, validate=validate.Range(100, 3_600_000))
    mode = fields.String(load_default="internet", validate=validate.OneOf(["internet", "local"]))
    repository_tokens = fields.Nested(RepositoryTokens, load_default=dict, load_only=True)
    repository_tokens_set = fields.Dict(keys=fields.String(), values=fields.Boolean(), dump_only=True)


class RabbitMQSettings(StrictSchema):
    """The broker as the agents see it, and the account that makes their users: not the control plane's own
    connection (``AMQP_URI``), whose address (127.0.0.1, a cluster name) a managed server may not reach."""
    host = fields.String(load_default="127.0.0.1", validate=validate.Length(min=1, max=253),
                         metadata={"description": "Address the agents connect to (copied into each bundle)"})
    port = fields.Integer(load_default=5672, validate=validate.Range(1, 65535),
                          metadata={"description": "AMQP port the agents connect to"})
    management_url = fields.String(
        allow_none=True, load_default=None, validate=validate.URL(schemes={"http", "https"}, require_tld=False),
        metadata={"description": "Management API where each agent's user is made; null: the provisioner's setting, "
                                 "else port 15672 of the control plane's own broker host"})
    user = fields.String(load_default="guest", validate=validate.Length(min=1, max=128),
                         metadata={"description": "Management API account (with password; none saved: the control "
                                                  "plane's own broker account)"})
    password = Secret(allow_none=True, load_default=None)
    vhost = fields.String(load_default="/", validate=validate.Length(min=1, max=128),
                          metadata={"description": "Unset: the control plane's own vhost (STEWARD_AMQP_VHOST)"})
    password_set = fields.Boolean(dump_only=True)


class BackupSettings(StrictSchema):
    password = Secret(allow_none=True, load_default=None, metadata={"description": "Password for managed backups"})
    password_set = fields.Boolean(dump_only=True)


SECTIONS = {
    "monitoring": MonitoringSettings,
    "update": UpdateSettings,
    "rabbitmq": RabbitMQSettings,
    "backup": BackupSettings,
}


class AdminSettings(StrictSchema):
    monitoring = fields.Nested(MonitoringSettings)
    update = fields.Nested(UpdateSettings)
    rabbitmq = fields.Nested(RabbitMQSettings)
    backup = fields.Nested(BackupSettings)


class RabbitMQTest(StrictSchema):
    """Credentials to try; any field left out is taken from the saved settings."""

    host = fields.String(validate=validate.Length(min=1, max=253))
    port = fields.Integer(validate=validate.Range(1, 65535))
    user = fields.String(validate=validate.Length(min=1, max=128))
    password = Secret()
    vhost = fields.String(validate=validate.Length(min=1, max=128))


class RabbitMQTestResult(Schema):
    ok = fields.Boolean()
    message = fields.String()
    latency_ms = fields.Float(allow_none=True)

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shared.components import COMPONENTS, INSTALLABLE
from shared.schemas import StrictSchema
from shared.schemas.fields import INT32_MAX, Address, IPAddress, Secret, display_name

OPERATING_SYSTEMS = ("ubuntu", "centos")
COMPONENT_STATES = ("running", "stopped", "not_installed", "unknown")
# running: components run; stopped: reachable, nothing running; down: no heartbeat for 90 s;
# unknown: never heard from (not installed yet).
SERVER_STATES = ("running", "stopped", "down", "unknown")
RUNTIMES = ("docker", "process")
COMMUNICATION_TYPES = ("push", "pull")
# Heartbeats come every 30 s: 4 or more in the last 2 minutes is a healthy link.
REQUESTS_GREEN_AT = 4

_name = display_name(128)


class ServerCreate(StrictSchema):
    name = fields.String(required=True, validate=_name, metadata={"description": "Display name, unique"})
    address = Address(required=True, metadata={"description": "FQDN or IP address"})
    os = fields.String(required=True, validate=validate.OneOf(OPERATING_SYSTEMS))
    ssh_port = fields.Integer(load_default=22, validate=validate.Range(1, 65535))
    ssh_user = fields.String(load_default="root", validate=validate.Length(min=1, max=64))
    ssh_password = Secret(validate=validate.Length(min=1, max=1024))
    ssh_private_key = Secret(validate=validate.Length(min=1, max=16384))
    components = fields.List(
        fields.String(validate=validate.OneOf(COMPONENTS)),
        load_default=list(INSTALLABLE),
        metadata={"description": "Components to install"},
    )
    monitoring_api_ip = IPAddress(allow_none=True, metadata={"description": "Overrides the default monitoring API IP"})
    communication_type = fields.String(
        allow_none=True, validate=validate.OneOf(COMMUNICATION_TYPES),
        metadata={"description": "push: the agent sends its statistics to the broker; pull: monitoring-ingest "
                                 "fetches them from the agent (port 8741). Null: the monitoring settings' default. "
                                 "Takes effect at the next install or setup bundle"})
    runtime = fields.String(load_default="docker", validate=validate.OneOf(RUNTIMES))
    server_user = fields.String(
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Existing user to own this server; a random one is created when omitted"},
    )

    @validates_schema
    def one_credential(self, data, **kwargs):
        if data.get("ssh_password") and data.get("ssh_private_key"):
            raise ValidationError("give an SSH password or a private key, not both", "ssh_private_key")
        if len(set(data.get("components") or [])) != len(data.get("components") or []):
            raise ValidationError("each component at most once", "components")


class ServerUpdate(ServerCreate):
    """Every field optional; a present field replaces the stored value."""

    name = fields.String(validate=_name)
    address = Address()
    os = fields.String(validate=validate.OneOf(OPERATING_SYSTEMS))
    ssh_port = fields.Integer(validate=validate.Range(1, 65535))
    ssh_user = fields.String(validate=validate.Length(min=1, max=64))
    ssh_password = Secret(allow_none=True, validate=validate.Length(min=1, max=1024))
    ssh_private_key = Secret(allow_none=True, validate=validate.Length(min=1, max=16384))
    components = fields.List(fields.String(validate=validate.OneOf(COMPONENTS)))
    runtime = fields.String(validate=validate.OneOf(RUNTIMES))
    server_user = fields.String(validate=validate.Length(min=1, max=64))

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("nothing to change", "_schema")


class Component(Schema):
    name = fields.String(validate=validate.OneOf(COMPONENTS))
    version = fields.String(allow_none=True)
    state = fields.String(validate=validate.OneOf(COMPONENT_STATES))
    updated_at = fields.DateTime()


class ServerDetail(Schema):
    id = fields.Integer()
    name = fields.String()
    address = fields.String()
    os = fields.String()
    ssh_port = fields.Integer()
    ssh_user = fields.String()
    ssh_auth = fields.String(
        allow_none=True, metadata={"description": "Which SSH secret is stored: password, key, or null"}
    )
    components = fields.List(fields.Nested(Component))
    monitoring_api_ip = fields.String(allow_none=True)
    communication_type = fields.String(allow_none=True, metadata={"description": "Null: the global default"})
    runtime = fields.String()
    agent_last_seen_at = fields.DateTime(
        allow_none=True, metadata={"description": "When the server's agent last used its token (null: never)"}
    )
    state = fields.String(validate=validate.OneOf(SERVER_STATES))
    server_user = fields.String()
    requests = fields.Integer(metadata={"description": "Heartbeats received in the last 2 minutes"})
    requests_status = fields.String(validate=validate.OneOf(["green", "red"]))
    versions = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "Version of each running component"}
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ServerRow(Schema):
    """One row of the fleet list: what the operator's list shows."""

    id = fields.Integer()
    name = fields.String()
    address = fields.String()
    requests = fields.Integer(metadata={"description": "Heartbeats received in the last 2 minutes"})
    requests_status = fields.String(validate=validate.OneOf(["green", "red"]))
    versions = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "Version of each running component"}
    )
    state = fields.String(validate=validate.OneOf(SERVER_STATES))


class ServerListQuery(StrictSchema):
    search = fields.String(validate=validate.Length(max=128), metadata={"description": "Full or partial name, any case"})
    sort = fields.String(load_default="name", validate=validate.OneOf(["name", "-name"]))
    state = fields.String(validate=validate.OneOf(SERVER_STATES))
    os = fields.String(validate=validate.OneOf(OPERATING_SYSTEMS))
    runtime = fields.String(validate=validate.OneOf(RUNTIMES))
    page = fields.Integer(load_default=1, validate=validate.Range(1, INT32_MAX))
    per_page = fields.Integer(load_default=25, validate=validate.Range(1, 500))


class ServerPage(Schema):
    items = fields.List(fields.Nested(ServerRow))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


def requests_status(requests):
    return "green" if requests >= REQUESTS_GREEN_AT else "red"

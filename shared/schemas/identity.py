from marshmallow import Schema, fields, validate

from shared.schemas import StrictSchema

ROLES = ("admin", "operator", "viewer")
SERVERS_GROUP = "servers"

_user_name = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$", error="letters, digits and . _ @ - only, at most 64")


class UserCreate(StrictSchema):
    name = fields.String(required=True, validate=_user_name)
    role = fields.String(load_default="viewer", validate=validate.OneOf(ROLES))
    groups = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=list)


class UserUpdate(StrictSchema):
    role = fields.String(validate=validate.OneOf(ROLES))
    groups = fields.List(fields.String(validate=validate.Length(min=1, max=64)))


class User(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()
    groups = fields.List(fields.String())
    scope = fields.String()
    server_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class TokenCreate(StrictSchema):
    name = fields.String(load_default="api", validate=validate.Length(min=1, max=128))
    user = fields.String(metadata={"description": "Whose token (admins only; default: yourself)"})
    expires_in_days = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(1, 3650))


class Token(Schema):
    id = fields.Integer()
    name = fields.String()
    scope = fields.String(metadata={"description": "full, or agent: a server's agent, which may only report for it"})
    user = fields.String()
    prefix = fields.String(metadata={"description": "First characters of the token, to tell tokens apart"})
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    last_used_at = fields.DateTime(allow_none=True)


class NewToken(Token):
    token = fields.String(metadata={"description": "The secret; shown this once and never again"})


class Principal(Schema):
    """Who is calling: what the gateway learns from a token and passes on to services."""

    user_id = fields.Integer()
    name = fields.String()
    role = fields.String()
    groups = fields.List(fields.String())
    scope = fields.String()
    server_id = fields.Integer(allow_none=True)

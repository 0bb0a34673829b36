from marshmallow import Schema, fields, validate

from shared.schemas import StrictSchema
from shared.schemas.fields import Secret

ROLES = ("admin", "operator", "viewer")
SERVERS_GROUP = "servers"

_user_name = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$", error="letters, digits and . _ @ - only, at most 64")
# Console sign-in; hashed with argon2id by inventory, never stored or logged as given, sealed on the broker.
_password = Secret(validate=validate.Length(min=8, max=1024),
                   metadata={"description": "Lets the user sign in to the web console (8 characters or more)"})
SESSION_SCOPE = "session"  # a console session's token: a user's, but carried in a cookie and ended by sign-out


class UserCreate(StrictSchema):
    name = fields.String(required=True, validate=_user_name)
    role = fields.String(load_default="viewer", validate=validate.OneOf(ROLES))
    groups = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=list)
    password = _password


class UserUpdate(StrictSchema):
    role = fields.String(validate=validate.OneOf(ROLES))
    groups = fields.List(fields.String(validate=validate.Length(min=1, max=64)))
    password = _password


class User(Schema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()
    groups = fields.List(fields.String())
    scope = fields.String()
    server_id = fields.Integer(allow_none=True)
    password_set = fields.Boolean(metadata={"description": "Whether the user may sign in to the web console"})
    created_at = fields.DateTime()


class SignIn(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = Secret(required=True, validate=validate.Length(min=1, max=1024))


class PasswordChange(StrictSchema):
    current_password = Secret(required=True, validate=validate.Length(min=1, max=1024))
    new_password = Secret(required=True, validate=validate.Length(min=8, max=1024),
                          metadata={"description": "8 characters or more"})


class Session(Schema):
    """Who is signed in; ``csrf_token`` goes in the X-CSRF-Token header of every change made with the cookie."""

    user = fields.Nested(lambda: Principal(only=("user_id", "name", "role", "groups")))
    csrf_token = fields.String(allow_none=True, metadata={"description": "None when called with a bearer token"})
    expires_at = fields.DateTime(allow_none=True)


class TokenCreate(StrictSchema):
    name = fields.String(load_default="api", validate=validate.Length(min=1, max=128))
    user = fields.String(metadata={"description": "Whose token (admins only; default: yourself)"})
    expires_in_days = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(1, 3650))


class TokenListQuery(StrictSchema):
    user = fields.String(validate=_user_name, metadata={"description": "Only this user's tokens"})


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

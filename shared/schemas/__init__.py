"""API contracts: the marshmallow schemas that validate requests (in the owning
service) and document them (the gateway's OpenAPI), so the two cannot drift."""
from marshmallow import RAISE, Schema


class StrictSchema(Schema):
    """Input schemas reject fields they do not know."""

    class Meta:
        unknown = RAISE


def load_or_raise(schema, data, what="request"):
    """Validate ``data``; a failure becomes the typed error the gateway maps to 400."""
    from marshmallow import ValidationError

    from shared.errors import ValidationFailed

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationFailed(f"the {what} must be a JSON object", {"_schema": ["must be a JSON object"]})
    try:
        return schema.load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise ValidationFailed(f"invalid {what}", messages) from None

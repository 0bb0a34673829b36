"""API contracts: the marshmallow schemas that validate requests (in the owning
service) and document them (the gateway's OpenAPI), so the two cannot drift."""
import re

from marshmallow import RAISE, Schema, ValidationError, pre_load
from marshmallow import fields as marshmallow_fields  # "fields" is the name of our own module here

# Deeper input is refused before any field sees it (the gateway refuses deeper JSON too).
MAX_DEPTH = 16
# PostgreSQL refuses NUL in text, and a lone surrogate cannot be encoded as UTF-8: both are refused
# at the door instead of failing in the database.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_TEXT = "must not contain NUL characters or unpaired surrogates"


def depth(data):
    """How deeply JSON-like ``data`` nests (a scalar is 0, ``{"a": [1]}`` is 2); iterative, so any input is safe."""
    deepest, pending = 0, [(data, 0)]
    while pending:
        value, level = pending.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, (list, tuple)):
            continue
        deepest = max(deepest, level + 1)
        pending.extend((item, level + 1) for item in value)
    return deepest


def unstorable_text(data):
    """Where ``data`` holds text PostgreSQL cannot store: the error messages keyed like marshmallow's
    (``{"settings": {"url": [...]}}``), or None when it is clean."""
    if isinstance(data, str):
        return [UNSTORABLE_TEXT] if _UNSTORABLE.search(data) else None
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return None
    errors = {}
    for key, value in items:
        if isinstance(key, str) and _UNSTORABLE.search(key):
            errors.setdefault("_schema", []).append(f"a field name {UNSTORABLE_TEXT}")
            continue
        found = unstorable_text(value)
        if found:
            errors[key] = found
    return errors or None


def _own_schema(field):
    """Whether a field's value is loaded by a schema of its own (Nested, or a List of them), which checks it."""
    inner = field.inner if isinstance(field, marshmallow_fields.List) else field
    return isinstance(inner, marshmallow_fields.Nested) and isinstance(inner.schema, StorableSchema)


class StorableSchema(Schema):
    """Refuses, in every field it declares, text no column could store and input nested too deep
    (what it does not declare, marshmallow refuses or drops as the schema's ``unknown`` says)."""

    checked_elsewhere = ()  # fields a schema of their own loads (and checks)

    @pre_load
    def refuse_unstorable_text(self, data, **kwargs):
        if not isinstance(data, dict):
            return data  # marshmallow says what is wrong with it
        declared = {key: value for key, value in data.items()
                    if key in self.fields and key not in self.checked_elsewhere and not _own_schema(self.fields[key])}
        if depth(declared) > MAX_DEPTH:
            raise ValidationError({"_schema": [f"nested deeper than {MAX_DEPTH} levels"]})
        errors = unstorable_text(declared)
        if errors:
            raise ValidationError(errors)
        return data


class StrictSchema(StorableSchema):
    """Input schemas reject fields they do not know, and text no column could store."""

    class Meta:
        unknown = RAISE


def load_or_raise(schema, data, what="request"):
    """Validate ``data``; a failure becomes the typed error the gateway maps to 400."""
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

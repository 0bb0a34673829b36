"""Field types more than one schema needs."""
import ipaddress
import re
import unicodedata
from datetime import timedelta

from marshmallow import ValidationError, fields, validate

from shared.crypto import input_purpose

# The widest range a PostgreSQL ``integer`` column (ids, counts) holds.
INT32_MAX = 2**31 - 1
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def validate_fqdn_or_ip(value):
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()  # "10.0.0" is a mistyped address, not a host name
    ):
        raise ValidationError("must be a fully qualified domain name or an IP address")


def validate_ip(value):
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError("must be an IPv4 or IPv6 address") from None


class Address(fields.String):
    def __init__(self, **kwargs):
        super().__init__(validate=validate_fqdn_or_ip, **kwargs)


class IPAddress(fields.String):
    def __init__(self, **kwargs):
        super().__init__(validate=validate_ip, **kwargs)


class Secret(fields.String):
    """Write-only: accepted on input, never dumped; the gateway seals it for the broker (``seal_secrets``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("load_only", True)
        super().__init__(**kwargs)


def holds_secrets(schema):
    """Whether ``seal_secrets`` has anything to seal in some input of ``schema``."""
    return any(isinstance(field, Secret) or field.metadata.get("secret_keys")
               or (isinstance(field, fields.Nested) and holds_secrets(field.schema))
               for field in schema.fields.values())


def seal_secrets(box, schema, data, path=()):
    """Request ``data`` with the value of each Secret field of ``schema`` (in nested schemas too, and the keys a
    Dict field names in its ``secret_keys`` metadata) sealed for its place, so that it crosses RPC only sealed.
    The receiving service's RPC entrypoint opens each at that place (``SecretBox.open_inputs``); anything that is
    not a string is left for the schema to refuse."""
    sealed = dict(data)
    for name, field in schema.fields.items():
        value, place = data.get(field.data_key or name), (*path, field.data_key or name)
        if isinstance(field, Secret) and isinstance(value, str):
            sealed[place[-1]] = box.seal_for(input_purpose(place), value)
        elif isinstance(field, fields.Nested) and isinstance(value, dict):
            sealed[place[-1]] = seal_secrets(box, field.schema, value, place)
        elif isinstance(field, fields.Dict) and isinstance(value, dict) and field.metadata.get("secret_keys"):
            sealed[place[-1]] = {key: box.seal_for(input_purpose((*place, key)), item)
                                 if key in field.metadata["secret_keys"] and isinstance(item, str) else item
                                 for key, item in value.items()}
    return sealed


def Id(**kwargs):
    """A positive id as PostgreSQL's ``integer`` columns hold them."""
    return fields.Integer(validate=validate.Range(1, INT32_MAX), **kwargs)


class Timestamp(fields.AwareDateTime):
    """ISO 8601 with a UTC offset no wider than ±14:00 (the widest any time zone uses), in the years 1970 to
    8999 (so arithmetic on it, a step or a day away, cannot leave Python's datetime range)."""

    MAX_OFFSET = timedelta(hours=14)
    YEARS = (1970, 8999)
    default_error_messages = {"offset": "the UTC offset must be within -14:00 and +14:00",
                              "range": "the year must be between 1970 and 8999"}

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        if abs(moment.utcoffset()) > self.MAX_OFFSET:
            raise self.make_error("offset")
        if not self.YEARS[0] <= moment.year <= self.YEARS[1]:
            raise self.make_error("range")
        return moment


def _is_invisible_control(character):
    # Cc: control characters (tab, newline, escape, ...); Cf: format characters, among them the
    # bidirectional overrides and isolates (U+202A..U+202E, U+2066..U+2069) that make a name read
    # otherwise than it sorts and matches.
    return unicodedata.category(character) in ("Cc", "Cf")


def validate_display_name(value):
    if any(_is_invisible_control(character) for character in value):
        raise ValidationError("must not contain control or bidirectional formatting characters")


def display_name(max_length):
    """A name people read in lists: 1..max_length characters, no white space at either end, no control
    or bidirectional formatting characters."""
    return validate.And(
        validate.Length(min=1, max=max_length),
        validate.Regexp(r"^\S(.*\S)?$", error="must not start or end with white space"),
        validate_display_name,
    )

"""Field types more than one schema needs."""
import ipaddress
import re

from marshmallow import ValidationError, fields

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
    """Write-only: accepted on input, never dumped."""

    def __init__(self, **kwargs):
        kwargs.setdefault("load_only", True)
        super().__init__(**kwargs)

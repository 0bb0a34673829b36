"""The AsyncAPI 3 document of Steward's events, generated from the event catalog (shared/events.py).

For whoever integrates another system: each event is published by the service that emits it to that
service's topic exchange ``<service>.events`` (durable) with the event's name as the routing key; bind a
queue of your own to the exchange with that key (or ``#``) to receive it. The payload is JSON; its schema
is the catalog's, which both sides validate with, and ``version`` says which version of it a payload is.
Events leave through each service's transactional outbox, so one may arrive more than once: its ``id``
tells a repeat, and ``sequence`` the order in which its service wrote them.
"""
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from shared.events import CATALOG

ASYNCAPI_VERSION = "3.0.0"


def _schema_name(schema):
    return (schema if isinstance(schema, type) else type(schema)).__name__


def payload_schemas(catalog):
    """JSON Schemas of every payload (and what they nest), by schema class name, referring to each other as
    ``#/components/schemas/<name>``."""
    # OpenAPI 3.1's schemas are JSON Schema (a null is a type), which is what AsyncAPI's default format takes.
    spec = APISpec(title="events", version="1", openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)])
    for kind in catalog.values():
        if _schema_name(kind.schema) not in spec.components.schemas:
            spec.components.schema(_schema_name(kind.schema), schema=kind.schema)
    return spec.to_dict()["components"]["schemas"]


def build_asyncapi(catalog=CATALOG):
    schemas = payload_schemas(catalog)
    channels, operations, messages = {}, {}, {}
    for name, kind in catalog.items():
        # Each event's payload: its schema, with the event's name and version fixed.
        payload = {"allOf": [{"$ref": f"#/components/schemas/{_schema_name(kind.schema)}"},
                             {"type": "object", "properties": {"event": {"const": name},
                                                               "version": {"const": kind.version}}}]}
        messages[name] = {
            "name": name,
            "title": f"{name} (version {kind.version})",
            "summary": f"Emitted by {kind.source}; default severity {kind.severity}",
            "contentType": "application/json",
            "payload": payload,
            "bindings": {"amqp": {"contentEncoding": "utf-8", "messageType": name, "bindingVersion": "0.3.0"}},
        }
        if kind.schema.__doc__:  # what the fact means, where its schema says (a docstring is not inherited)
            messages[name]["description"] = " ".join(kind.schema.__doc__.split())
        channels[name] = {
            "address": name,
            "title": f"{kind.source}.events, routing key {name}",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"amqp": {"is": "routingKey", "bindingVersion": "0.3.0", "exchange": {
                "name": f"{kind.source}.events", "type": "topic", "durable": True, "autoDelete": False}}},
        }
        operations[f"send_{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": f"{kind.source} publishes {name}",
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Steward events",
            "version": "1",
            "description": __doc__.split("\n\n", 1)[1].strip(),
        },
        "defaultContentType": "application/json",
        "servers": {"broker": {"host": "127.0.0.1:5672", "protocol": "amqp", "protocolVersion": "0.9.1",
                               "description": "The control plane's RabbitMQ (its address and vhost are the "
                                              "deployment's: STEWARD_AMQP_HOST, STEWARD_AMQP_VHOST)"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }

"""The OpenAPI 3 document, generated from the route table and its marshmallow schemas."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from gateway.routes import OPERATIONS, PREFIX

FAMILIES = {
    "PVServers": "Managed servers: registration, details, actions",
    "Monitoring": "Heartbeats, system and DNS statistics",
    "Admin": "Admin settings, users and API tokens",
}

_ERROR_TEXT = {
    400: "Invalid input: `details` names each field and what is wrong with it",
    401: "No valid API token",
    403: "The token's user may not do this",
    404: "No such object",
    409: "Conflicts with what is stored (a duplicate name)",
}


class Error(Schema):
    error = fields.String(metadata={"description": "Machine-readable code, e.g. invalid_input"})
    message = fields.String()
    details = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


# Path parameters that are strings (task ids are hex UUIDs); every other id is an integer.
STRING_PARAMETERS = {"task_id"}


def _schema_name_resolver(schema):
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    if getattr(schema, "partial", False):
        name += "Patch"
    return name


def build_spec(operations=OPERATIONS):
    spec = APISpec(
        title="Steward API",
        version="2",
        openapi_version="3.0.3",
        info={"description": "Control plane for fleets of managed DNS, DHCP and backup servers."},
        tags=[{"name": name, "description": text} for name, text in FAMILIES.items()],
        plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name_resolver)],
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=Error)
    for status, text in _ERROR_TEXT.items():
        spec.components.response(str(status), {"description": text, "content": {"application/json": {"schema": "Error"}}})

    paths = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    for path, ops in paths.items():
        spec.path(path=PREFIX + path, operations=ops)
    return spec.to_dict()


def _operation(op):
    parameters = [
        {"in": "path", "name": name, "required": True,
         "schema": {"type": "string"} if name in STRING_PARAMETERS else {"type": "integer"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    if op.query:
        parameters.append({"in": "query", "schema": op.query})
    if op.response is None:
        success = {"description": "Done"}
    else:
        schema = {"type": "array", "items": op.response} if op.many else op.response
        success = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    operation = {
        "tags": [op.family],
        "summary": op.summary,
        "parameters": parameters,
        "responses": {str(op.status): success, **{str(code): {"$ref": f"#/components/responses/{code}"} for code in op.errors}},
    }
    if op.body:
        body = op.body(partial=True) if op.method == "PATCH" else op.body
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if not op.public:
        operation["security"] = [{"bearer": []}]
    return operation

"""The OpenAPI 3 document, generated from the route table (gateway/routes.py) and its marshmallow schemas.

Every status an operation can answer is in it: the ones its table entry names (a 409, a 502), and the
ones that follow from its shape, which the gateway answers the same way for every operation (a token:
401 and 403; a path parameter: 404; a body: 400, 408, 413 and 415; a query: 400; any RPC: 500 and 503;
an Idempotency-Key: 400, 409 and 422).
"""
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from gateway.routes import Auth
from shared.idempotency import KEY_RETENTION, MAX_KEY_LENGTH

FAMILIES = {
    "PVServers": "Managed servers: registration, details, actions",
    "Monitoring": "Heartbeats, system and DNS statistics",
    "Admin": "Admin settings, users and API tokens",
}

STATUS_TEXT = {
    400: "Invalid input: `details` names each field and what is wrong with it",
    401: "No valid API token",
    403: "The token's user may not do this",
    404: "No such object",
    408: "The request body stopped arriving",
    409: "Conflicts with what is stored (a duplicate name, a state that does not allow it, an operation on the "
         "server still running: `details.task_id` names it)",
    411: "The upload needs a Content-Length",
    413: "The body is larger than the operation takes",
    415: "The body is not of the media type the operation takes",
    422: "The Idempotency-Key was sent before with a different request",
    429: "Too many failed sign-ins for this user name or from this address: try again after `Retry-After` seconds",
    500: "An internal error; `details.request_id` finds it in the logs (no more is said)",
    502: "A server or registry beyond the control plane refused or did not answer",
    503: "A service of the control plane, or the message broker, is not reachable now",
}

# marshmallow's error messages, as they come back in `details`: a list of messages per field, or the same
# shape again for a nested object or a list's items (keyed by position).
ERROR_DETAILS = {
    "type": "object",
    "additionalProperties": {"oneOf": [{"type": "array", "items": {"type": "string"}},
                                       {"$ref": "#/components/schemas/ErrorDetails"}]},
}
ERROR = {
    "type": "object",
    "required": ["error", "message", "details"],
    "properties": {
        "error": {"type": "string", "description": "Machine-readable code, e.g. invalid_input"},
        "message": {"type": "string"},
        "details": {"$ref": "#/components/schemas/ErrorDetails"},
    },
}
CONTENT_SCHEMAS = {"text/plain": {"type": "string"}, "application/x-tar": {"type": "string", "format": "binary"}}


def _schema_name_resolver(schema):
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__
    if getattr(schema, "partial", False):
        name += "Patch"
    return name


def statuses(op):
    """Every error status ``op`` may answer."""
    found = set(op.errors) | {500, 503}
    if op.auth is not Auth.PUBLIC:
        found |= {401, 403}
    if op.parameters():
        found.add(404)
    if op.query:
        found.add(400)
    if op.body:
        found |= {400, 408, 413, 415}
    if op.idempotent:
        found |= {400, 409, 422}  # a malformed key; its first request still running; reused for another request
    return sorted(found)


IDEMPOTENCY_KEY = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": (f"Any unique string (a uuid4): sent again with the same request within "
                    f"{int(KEY_RETENTION.total_seconds() // 3600)} hours, the create is not run again and the "
                    "first answer comes back (same status and body); with a different request, 422. Keys are "
                    "per caller and operation."),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[\\x21-\\x7e]+$"},
}


def build_spec(operations):
    spec = APISpec(
        title="Steward API",
        version="2",
        openapi_version="3.0.3",
        info={"description": "Control plane for fleets of managed DNS, DHCP and backup servers."},
        tags=[{"name": name, "description": text} for name, text in FAMILIES.items()],
        plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name_resolver)],
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("ErrorDetails", ERROR_DETAILS)
    spec.components.schema("Error", ERROR)
    for status, text in STATUS_TEXT.items():
        spec.components.response(str(status), {"description": text, "content": {"application/json": {"schema": "Error"}}})

    paths = {}
    for op in operations:
        if op.family is not None:
            paths.setdefault(op.openapi_path, {})[op.method.lower()] = _operation(op)
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
    return spec.to_dict()


def _operation(op):
    parameters = [{"in": "path", "name": name, "required": True, "schema": dict(schema)}
                  for name, schema in op.parameters()]
    if op.query:
        parameters.append({"in": "query", "schema": op.query})
    if op.idempotent:
        parameters.append(dict(IDEMPOTENCY_KEY))
    if op.content_type != "application/json":
        success = {"description": "OK", "content": {op.content_type: {"schema": CONTENT_SCHEMAS[op.content_type]}}}
    elif op.response is None:
        success = {"description": "Done"}
    else:
        schema = {"type": "array", "items": op.response} if op.many else op.response
        success = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    responses = {str(op.status): success}
    if op.empty_status:
        responses[str(op.empty_status)] = {"description": "Done; nothing more to say"}
    responses.update({str(code): {"$ref": f"#/components/responses/{code}"} for code in statuses(op)})
    operation = {
        "tags": [op.family],
        "summary": op.summary,
        "description": f"Who may call it: {op.access.value}.",
        "x-steward-access": op.access.name.lower(),
        "parameters": parameters,
        "responses": responses,
    }
    if op.body:
        body = op.body(partial=True) if op.method == "PATCH" else op.body
        operation["requestBody"] = {"required": op.body_required, "content": {"application/json": {"schema": body}}}
    if op.auth is not Auth.PUBLIC:
        operation["security"] = [{"bearer": []}]
    return operation

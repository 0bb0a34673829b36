"""Resources: small classes whose ``on_<method>`` serve the operations of gateway/routes.py.

A responder's success status and Location header come from its operation in the table
(the middleware sets them), so a responder sets a status only when it differs.
"""
import functools
import hashlib
import json

import falcon

from shared.errors import ValidationFailed
from shared.schemas import MAX_DEPTH, depth
from shared.schemas.fields import holds_secrets, seal_secrets

# A JSON body larger than this is refused before it is read (image uploads are streamed, not JSON).
MAX_JSON_BYTES = 1 << 20


def json_loads(text):
    """The JSON handler's parser: input nested deeper than any schema takes is refused (as the schemas do),
    before it reaches one, and so is input too deep for the parser itself."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    else:
        if depth(value) <= MAX_DEPTH:
            return value
    raise ValidationFailed(f"the JSON body nests deeper than {MAX_DEPTH} levels",
                           {"_schema": [f"nested deeper than {MAX_DEPTH} levels"]})


def json_body(req):
    """The request's JSON object. No body at all is {} where the operation's body is optional, else a 400."""
    if not req.content_length:
        operation = req.context.get("operation")
        if operation is None or operation.body_required:
            raise ValidationFailed("send a JSON object as the request body",
                                   {"_schema": ["a JSON body is required"]})
        return {}
    if not (req.content_type or "").startswith("application/json"):
        raise falcon.HTTPUnsupportedMediaType(description="send the body as JSON with 'Content-Type: application/json'")
    if req.content_length > MAX_JSON_BYTES:
        raise falcon.HTTPPayloadTooLarge(description=f"a JSON body may be at most {MAX_JSON_BYTES} bytes")
    body = req.get_media()
    if not isinstance(body, dict):
        raise ValidationFailed("the request body must be a JSON object", {"_schema": ["must be a JSON object"]})
    operation = req.context.get("operation")
    schema = sealing_schema(operation.body) if operation is not None and operation.body is not None else None
    if schema is not None:
        body = seal_secrets(req.context.secret_box, schema, body)
    return body


@functools.cache
def sealing_schema(schema_class):
    """The body schema, if its bodies can hold a secret to seal (most cannot: a heartbeat is not walked)."""
    schema = schema_class()
    return schema if holds_secrets(schema) else None


def principal(req):
    return req.context.principal


def send_unless_unchanged(req, resp, media):
    """``media`` with an ETag; a 304 without a body when the caller already holds it (If-None-Match), so a page
    that polls (the web console's list) costs no transfer while nothing changes."""
    tag = hashlib.sha256(json.dumps(media, sort_keys=True, default=str).encode()).hexdigest()[:32]
    resp.etag = tag
    if tag in (req.if_none_match or ()):
        resp.status = falcon.HTTP_304
        return
    resp.media = media

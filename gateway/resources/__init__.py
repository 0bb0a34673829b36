import falcon

from shared.errors import ValidationFailed


def json_body(req):
    """The request's JSON object; an empty body counts as {}."""
    if not req.content_length:
        return {}
    if not (req.content_type or "").startswith("application/json"):
        raise falcon.HTTPUnsupportedMediaType(description="send the body as JSON with 'Content-Type: application/json'")
    body = req.get_media()
    if not isinstance(body, dict):
        raise ValidationFailed("the request body must be a JSON object", {"_schema": ["must be a JSON object"]})
    return body


def principal(req):
    return req.context.principal


def no_content(resp):
    resp.status = falcon.HTTP_204

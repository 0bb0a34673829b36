"""Every error leaves the gateway as JSON {"error", "message", "details"}; mapped here only."""
import logging

import falcon

from gateway.main_loop import WouldBlock
from shared.errors import StewardError

log = logging.getLogger("gateway")

_FALCON_CODES = {
    400: "invalid_input",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _send(resp, status, body):
    resp.status = status
    resp.media = body
    if status == 401:
        resp.set_header("WWW-Authenticate", 'Bearer realm="steward"')
    if status == 429:
        resp.set_header("Retry-After", body["details"].get("retry_after_seconds", ["60"])[0])


def handle_steward_error(req, resp, exc, params):
    if exc.http_status == 500:
        # An error no one typed: what it says (an exception's text, SQL) is for the log only.
        log.error("request failed: %s", exc.message, extra={"error": exc.code, "details": exc.details})
        _send_internal_error(req, resp)
        return
    if exc.http_status > 500:
        log.error("request failed: %s", exc.message, extra={"error": exc.code})
    _send(resp, exc.http_status, exc.to_dict())


def handle_http_error(req, resp, exc, params):
    status = exc.status_code
    code = _FALCON_CODES.get(status, "http_error")
    message = exc.description or exc.title or "request failed"
    if isinstance(exc, falcon.MediaMalformedError):
        code, message = "invalid_json", "the request body is not valid JSON"
    elif status == 404 and not exc.description:
        message = f"no such resource: {req.path}"
    elif status == 405:
        message = f"{req.method} is not allowed on {req.path}"
    for name, value in (exc.headers or {}).items():
        resp.set_header(name, value)
    _send(resp, status, {"error": code, "message": message, "details": {}})


def handle_client_timeout(req, resp, exc, params):
    """The client stopped sending its body for longer than the gateway waits (gateway/worker.py)."""
    _send(resp, 408, {"error": "request_timeout", "message": "the request body stopped arriving; send it again",
                      "details": {}})
    resp.set_header("Connection", "close")


def handle_unexpected(req, resp, exc, params):
    log.exception("unexpected error")
    _send_internal_error(req, resp)


def _send_internal_error(req, resp):
    _send(
        resp,
        500,
        {
            "error": "internal_error",
            "message": "internal error; the request id identifies it in the logs",
            "details": {"request_id": [req.context.get("request_id", "")]},
        },
    )


def _pass_on(req, resp, exc, params):
    raise exc  # out of the app, to the worker, which hands the request to a thread (gateway/main_loop.py)


def install(app):
    # Falcon picks the most specific handler for an exception's class.
    app.add_error_handler(WouldBlock, _pass_on)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(TimeoutError, handle_client_timeout)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(StewardError, handle_steward_error)

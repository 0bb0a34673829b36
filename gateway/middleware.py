"""Cross-cutting work: request ids and the access log, what the route table says of each operation,
then authentication."""
import logging
import re
import time

from gateway.main_loop import wait_allowed
from gateway.resources.session import COOKIE, CSRF_HEADER, SAFE_METHODS, csrf_matches
from gateway.routes import Auth
from shared.authz import is_agent
from shared.crypto import token_hash
from shared.errors import NotAuthenticated, PermissionDenied, ValidationFailed
from shared.idempotency import MAX_KEY_LENGTH
from shared.logs import new_request_id, request_id_var
from shared.rpc import idempotency_key_var

access_log = logging.getLogger("gateway.access")


class RequestContext:
    """Gives every request an id (the caller's X-Request-Id if sane) and logs one line for it."""

    def process_request(self, req, resp):
        incoming = req.get_header("X-Request-Id") or ""
        request_id = incoming if 8 <= len(incoming) <= 64 and incoming.isprintable() else new_request_id()
        req.context.request_id = request_id
        req.context.started = time.perf_counter()
        request_id_var.set(request_id)
        resp.set_header("X-Request-Id", request_id)

    def process_response(self, req, resp, resource, req_succeeded):
        latency_ms = (time.perf_counter() - req.context.get("started", time.perf_counter())) * 1000
        principal = req.context.get("principal")
        # Never the body: it may hold SSH secrets or passwords.
        access_log.info(
            "%s %s %s",
            req.method,
            req.path,
            resp.status[:3] if isinstance(resp.status, str) else resp.status,
            extra={
                "method": req.method,
                "path": req.path,
                "status": int(str(resp.status)[:3]),
                "latency_ms": round(latency_ms, 2),
                "user": principal["name"] if principal else None,
            },
        )
        request_id_var.set(None)


IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")  # visible ASCII: a uuid4, or any client's own


class OperationContext:
    """Each request's operation from the route table: its success status, the Location of what it made, and
    the Idempotency-Key of a create, which goes with its RPC calls (shared/idempotency.py); and the SecretBox
    that seals the secrets of its body before they cross the broker (resources' ``json_body``)."""

    def __init__(self, operations, secret_box):
        self.operations = {(op.uri_template, op.method): op for op in operations}
        self.secret_box = secret_box

    def process_resource(self, req, resp, resource, params):
        req.context.secret_box = self.secret_box
        operation = self.operations.get((req.uri_template, "GET" if req.method == "HEAD" else req.method))
        idempotency_key_var.set(None)
        if operation is not None:
            req.context.operation, req.context.path_params = operation, params
            resp.status = operation.status  # the responder may still answer otherwise (DELETE /servers/{id}: 204)
            key = req.get_header("Idempotency-Key") if operation.idempotent else None
            if key is not None:
                if not IDEMPOTENCY_KEY.fullmatch(key):
                    raise ValidationFailed(
                        f"an Idempotency-Key is 1 to {MAX_KEY_LENGTH} visible ASCII characters (a uuid4, say)",
                        {"Idempotency-Key": ["not 1 to 255 visible ASCII characters"]})
                idempotency_key_var.set(key)

    def process_response(self, req, resp, resource, req_succeeded):
        idempotency_key_var.set(None)
        operation = req.context.get("operation")
        if req_succeeded and operation is not None and operation.location:
            values = {**req.context.path_params, **resp.media}
            resp.location = operation.prefix + operation.location.format_map(values)


class ResponseHeaders:
    """What every answer says about itself: never sniff its type; and an answer to a token (a secret such as a
    new API token or a setup bundle, or anyone's data) is stored by no cache."""

    def __init__(self, operations, static_prefixes):
        self.public = {(op.uri_template, op.method) for op in operations if op.auth is Auth.PUBLIC}
        self.static_prefixes = tuple(static_prefixes)

    def process_response(self, req, resp, resource, req_succeeded):
        resp.set_header("X-Content-Type-Options", "nosniff")
        method = "GET" if req.method == "HEAD" else req.method
        if (req.uri_template, method) not in self.public and not req.path.startswith(self.static_prefixes):
            resp.set_header("Cache-Control", "no-store")


class Authentication:
    """``Authorization: Bearer <token>`` on every operation but the public ones; agent tokens where the table allows.
    Without that header, the web console's session cookie, and for a change also its CSRF token."""

    def __init__(self, authenticate, cache, operations):
        self.authenticate = authenticate  # token_hash(token) -> principal dict, raises NotAuthenticated
        self.cache = cache  # gateway/auth_cache.py's PrincipalCache
        self.rules = {}
        for op in operations:
            self.rules[(op.uri_template, op.method)] = op.auth
            # A method the path does not serve (405, OPTIONS) asks what the path's operations ask; a token if they differ.
            if self.rules.setdefault((op.uri_template, None), op.auth) is not op.auth:
                self.rules[(op.uri_template, None)] = Auth.USER

    def process_resource(self, req, resp, resource, params):
        if resource is None:
            return
        method = "GET" if req.method == "HEAD" else req.method  # HEAD asks what GET asks
        rule = self.rules.get((req.uri_template, method)) or self.rules.get((req.uri_template, None), Auth.USER)
        if rule is Auth.PUBLIC:
            return
        header = req.get_header("Authorization")
        token = self.session_token(req) if header is None else self.bearer_token(header)
        digest = token_hash(token)  # what inventory stores, and all that crosses the broker
        ticket = self.cache.ticket()  # before asking: a revocation heard meanwhile keeps the answer out
        principal = self.cache.get(digest)
        if principal is None:
            wait_allowed()  # an RPC: not on the worker's main loop (gateway/main_loop.py)
            principal = self.authenticate(digest)
            self.cache.put(digest, principal, ticket)
        if is_agent(principal) and rule is not Auth.AGENT:
            # An agent token (from a setup bundle) only reports for its own server.
            raise PermissionDenied("an agent token may only send its own server's heartbeats and statistics")
        req.context.principal = principal

    @staticmethod
    def bearer_token(header):
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("send an API token as 'Authorization: Bearer <token>'")
        return token.strip()

    @staticmethod
    def session_token(req):
        token = req.cookies.get(COOKIE)
        if not token:
            raise NotAuthenticated("send an API token as 'Authorization: Bearer <token>', or sign in")
        if req.method not in SAFE_METHODS and not csrf_matches(token, req.get_header(CSRF_HEADER)):
            raise PermissionDenied(f"a change made with the console's session needs its {CSRF_HEADER} header")
        req.context.session_token = token
        return token

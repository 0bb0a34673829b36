"""Cross-cutting work: request ids and the access log, then authentication."""
import hashlib
import logging
import threading
import time

from shared.errors import NotAuthenticated, PermissionDenied
from shared.logs import new_request_id, request_id_var

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


class PrincipalCache:
    """Verified tokens for a few seconds, so most requests need no auth round trip."""

    def __init__(self, ttl_seconds, max_entries=10000, clock=time.monotonic):
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries = {}
        self._lock = threading.Lock()

    def get(self, key):
        entry = self._entries.get(key)
        if entry and entry[1] > self.clock():
            return entry[0]
        return None

    def put(self, key, principal):
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = self.clock()
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (principal, self.clock() + self.ttl)


class Authentication:
    """``Authorization: Bearer <token>`` on every route but the public ones."""

    def __init__(self, authenticate, cache):
        self.authenticate = authenticate  # token -> principal dict, raises NotAuthenticated
        self.cache = cache

    def process_resource(self, req, resp, resource, params):
        if resource is None or getattr(resource, "public", False):
            return
        header = req.get_header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("send an API token as 'Authorization: Bearer <token>'")
        token = token.strip()
        key = hashlib.sha256(token.encode()).digest()
        principal = self.cache.get(key)
        if principal is None:
            principal = self.authenticate(token)
            self.cache.put(key, principal)
        if principal.get("scope") == "agent" and not getattr(resource, "agent_access", False):
            # An agent token (from a setup bundle) only reports for its own server.
            raise PermissionDenied("an agent token may only send its own server's heartbeats and statistics")
        req.context.principal = principal

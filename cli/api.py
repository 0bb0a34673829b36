"""A small REST client for the CLI: base URL, token, JSON errors turned into messages."""
import os
import time
import uuid
from pathlib import Path

import requests

STATE_DIR = Path(os.environ.get("STEWARD_STATE_DIR", ".steward"))
# A create whose answer was lost (no connection, a timeout, the control plane briefly away) is sent again after
# these pauses with the same Idempotency-Key, so it runs once and the retry gets its answer.
CREATE_RETRY_SECONDS = (0.5, 2.0)
RETRY_STATUSES = {502, 503, 504}


class ApiError(Exception):
    def __init__(self, status, body):
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        super().__init__(self.describe())

    def describe(self):
        message = self.body.get("message") or f"HTTP {self.status}"
        lines = [f"error: {message} (HTTP {self.status}{', ' + self.body['error'] if self.body.get('error') else ''})"]
        for field, problems in (self.body.get("details") or {}).items():
            lines.append(f"  {field}: {'; '.join(map(str, problems if isinstance(problems, list) else [problems]))}")
        return "\n".join(lines)


def default_url():
    if os.environ.get("STEWARD_URL"):
        return os.environ["STEWARD_URL"]
    saved = STATE_DIR / "api-url"
    return saved.read_text().strip() if saved.exists() else "http://127.0.0.1:8080"


def default_token():
    if os.environ.get("STEWARD_TOKEN"):
        return os.environ["STEWARD_TOKEN"]
    saved = STATE_DIR / "admin-token"
    return saved.read_text().strip() if saved.exists() else None


class Api:
    def __init__(self, url, token, timeout=30):
        self.base = url.rstrip("/") + "/api/v2"
        self.session = requests.Session()
        self.timeout = timeout
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def send(self, method, path, idempotency_key=None, **kwargs):
        """The response to a request; the API's JSON errors (and no answer at all) raise ApiError. A request with an
        ``idempotency_key`` (a create) is sent again with it when its answer was lost."""
        if idempotency_key:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Idempotency-Key": idempotency_key}
        pauses = list(CREATE_RETRY_SECONDS) if idempotency_key else []
        while True:
            if hasattr(kwargs.get("data"), "seek"):
                kwargs["data"].seek(0)  # an upload is sent whole again
            try:
                response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout):
                if pauses:
                    time.sleep(pauses.pop(0))
                    continue
                raise ApiError(0, {"message": f"cannot reach the Steward API at {self.base} (is it running? see `make up`)"}) from None
            if response.status_code in RETRY_STATUSES and pauses:
                time.sleep(pauses.pop(0))
                continue
            break
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text.strip()[:300] or response.reason}
            raise ApiError(response.status_code, body)
        return response

    def request(self, method, path, **kwargs):
        response = self.send(method, path, **kwargs)
        return response.json() if response.content else None

    def download(self, path):
        """A body that is not JSON (a log, a bundle): the response, for its .text or .content and headers."""
        return self.send("GET", path)

    def get(self, path, **params):
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path, body=None):
        return self.request("POST", path, json=body or {})

    def create(self, path, body=None, **kwargs):
        """A POST that makes something (a server, a token, a task): with an Idempotency-Key of its own."""
        if body is not None or not kwargs:
            kwargs["json"] = body or {}
        return self.request("POST", path, idempotency_key=uuid.uuid4().hex, **kwargs)

    def patch(self, path, body):
        return self.request("PATCH", path, json=body)

    def delete(self, path):
        return self.request("DELETE", path)

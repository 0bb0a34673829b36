"""A small REST client for the CLI: base URL, token, JSON errors turned into messages."""
import os
from pathlib import Path

import requests

STATE_DIR = Path(os.environ.get("STEWARD_STATE_DIR", ".steward"))


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

    def request(self, method, path, **kwargs):
        try:
            response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise ApiError(0, {"message": f"cannot reach the Steward API at {self.base} (is it running? see `make up`)"}) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text.strip()[:300] or response.reason}
            raise ApiError(response.status_code, body)
        return response.json() if response.content else None

    def get(self, path, **params):
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path, body=None):
        return self.request("POST", path, json=body or {})

    def patch(self, path, body):
        return self.request("PATCH", path, json=body)

    def delete(self, path):
        return self.request("DELETE", path)

"""Per-server RabbitMQ users, made through the management HTTP API.

Why the HTTP API rather than rabbitmqctl: the provisioner runs anywhere (its own
Kubernetes deployment), not on the broker's host with its Erlang cookie; the
API needs only the administrator credentials Steward already holds for the
agents' broker. Each user may write to the exchange steward.agent and, by
topic permission, only with its own server's routing keys; it may not read or
declare anything.
"""
import base64
import json
import secrets
from urllib import error, parse, request

from shared.errors import ServiceUnavailable

AGENT_EXCHANGE = "steward.agent"


def agent_user_name(server_id, vhost):
    """Users are broker-wide: the vhost in the name keeps deployments that share a broker apart."""
    return f"steward-agent-{'default' if vhost == '/' else vhost}-{server_id}"


class RabbitMQUsers:
    def __init__(self, management_url, user, password, vhost, timeout=10.0):
        self.base = management_url.rstrip("/")
        self.vhost = vhost
        self.timeout = timeout
        self.auth = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()

    def _call(self, method, path, body=None, missing_ok=False):
        data = json.dumps(body).encode() if body is not None else None
        req = request.Request(self.base + path, data=data, method=method,
                              headers={"Authorization": self.auth, "Content-Type": "application/json"})
        try:
            with request.urlopen(req, timeout=self.timeout) as response:
                return response.status
        except error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return 404
            raise ServiceUnavailable(f"RabbitMQ management API refused {method} {path.split('/')[2]}: HTTP {exc.code}",
                                     {"rabbitmq": [f"HTTP {exc.code}"]}) from None
        except (error.URLError, OSError) as exc:
            raise ServiceUnavailable(f"RabbitMQ management API at {self.base} is not reachable: {exc}",
                                     {"rabbitmq": ["not reachable"]}) from None

    def ensure_agent_user(self, server_id):
        """Create or reset the server's user with a fresh password; returns (user, password)."""
        user, password = agent_user_name(server_id, self.vhost), secrets.token_urlsafe(24)
        quoted_user, quoted_vhost = parse.quote(user, safe=""), parse.quote(self.vhost, safe="")
        self._call("PUT", f"/api/users/{quoted_user}", {"password": password, "tags": ""})
        self._call("PUT", f"/api/permissions/{quoted_vhost}/{quoted_user}",
                   {"configure": "^$", "write": f"^{AGENT_EXCHANGE.replace('.', '[.]')}$", "read": "^$"})
        self._call("PUT", f"/api/topic-permissions/{quoted_vhost}/{quoted_user}",
                   {"exchange": AGENT_EXCHANGE, "write": f"^stats[.][a-z]+[.]{server_id}$", "read": "^$"})
        return user, password

    def delete_agent_user(self, server_id):
        """True if a user was removed, False if there was none."""
        status = self._call("DELETE", f"/api/users/{parse.quote(agent_user_name(server_id, self.vhost), safe='')}", missing_ok=True)
        return status != 404

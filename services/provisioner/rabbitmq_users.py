"""Per-server RabbitMQ users, made through the management HTTP API.

Why the HTTP API rather than rabbitmqctl: the provisioner runs anywhere (its own
Kubernetes deployment), not on the broker's host with its Erlang cookie; the
API needs only the administrator credentials Steward already holds for the
agents' broker. Each user may write to the exchange steward.agent and, by
topic permission, only with its own server's routing keys; it may not read or
declare anything.

A server's user goes when the server goes (RabbitMQ then closes its
connections), and a new bundle gives it a new password and closes the
connections made with the old one: the agent of a deleted or re-issued bundle
cannot go on publishing over a connection it already had.
"""
import secrets
from urllib.parse import quote

import requests

from shared.errors import ServiceUnavailable
from shared.schemas.agent import EXCHANGE as AGENT_EXCHANGE
from shared.schemas.agent import agent_broker_user


class RabbitMQUsers:
    def __init__(self, management_url, user, password, vhost, timeout=10.0):
        self.base = management_url.rstrip("/")
        self.vhost = vhost
        self.timeout = timeout
        self.auth = (user, password or "")

    def _call(self, method, path, body=None, missing_ok=False):
        try:
            response = requests.request(method, self.base + path, json=body, auth=self.auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ServiceUnavailable(f"RabbitMQ management API at {self.base} is not reachable: {exc}",
                                     {"rabbitmq": ["not reachable"]}) from None
        if response.status_code >= 400 and not (missing_ok and response.status_code == 404):
            raise ServiceUnavailable(
                f"RabbitMQ management API refused {method} {path.split('/')[2]}: HTTP {response.status_code}",
                {"rabbitmq": [f"HTTP {response.status_code}"]})
        return response

    def ensure_agent_user(self, server_id):
        """Create or reset the server's user with a fresh password; returns (user, password)."""
        user, password = agent_broker_user(server_id, self.vhost), secrets.token_urlsafe(24)
        quoted_user, quoted_vhost = quote(user, safe=""), quote(self.vhost, safe="")
        self._call("PUT", f"/api/users/{quoted_user}", {"password": password, "tags": ""})
        # A new password does not end the connections opened with the old one (RabbitMQ keeps them).
        self._call("DELETE", f"/api/connections/username/{quoted_user}", missing_ok=True)
        self._call("PUT", f"/api/permissions/{quoted_vhost}/{quoted_user}",
                   {"configure": "^$", "write": f"^{AGENT_EXCHANGE.replace('.', '[.]')}$", "read": "^$"})
        self._call("PUT", f"/api/topic-permissions/{quoted_vhost}/{quoted_user}",
                   {"exchange": AGENT_EXCHANGE, "write": f"^stats[.][a-z]+[.]{server_id}$", "read": "^$"})
        return user, password

    def delete_agent_user(self, server_id):
        """True if a user was removed, False if there was none."""
        user = quote(agent_broker_user(server_id, self.vhost), safe="")
        return self._call("DELETE", f"/api/users/{user}", missing_ok=True).status_code != 404

    def has_agent_user(self, server_id):
        user = quote(agent_broker_user(server_id, self.vhost), safe="")
        return self._call("GET", f"/api/users/{user}", missing_ok=True).status_code != 404

    def agent_server_ids(self):
        """The ids of the servers that have a user of this vhost on the broker (for reconciling with inventory)."""
        prefix = agent_broker_user("", self.vhost)
        users = self._call("GET", "/api/users?columns=name").json()
        return sorted(int(u["name"][len(prefix):]) for u in users
                      if u["name"].startswith(prefix) and u["name"][len(prefix):].isdigit())

    def leftover_server_ids(self, existing_server_ids):
        """Ids of servers inventory no longer has whose user is still here: what a reconcile removes.
        ``existing_server_ids()`` is asked after the users are listed, so a server made meanwhile
        (its user comes after it) is never taken for a leftover."""
        with_user = set(self.agent_server_ids())
        return sorted(with_user - set(existing_server_ids()))

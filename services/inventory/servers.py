"""Managed servers: registration, changes, the fleet list, component states."""
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.inventory.fleet import FLEET, list_row, prune_changes
from services.inventory.models import Server, ServerComponent
from shared.authz import is_admin, require_may_change, require_role
from shared.components import COMPONENTS
from shared.crypto import SSH_PASSWORD, SSH_PRIVATE_KEY
from shared.errors import DuplicateName, PermissionDenied, ServerNotFound

UPDATABLE = ("name", "address", "os", "ssh_port", "ssh_user", "monitoring_api_ip", "communication_type", "runtime")


def running_versions(server):
    return {c.name: c.version for c in server.components if c.state == "running" and c.version}


def server_rule_view(server):
    """What shared/authz.py's server-user rule reads of a server."""
    return {"id": server.id, "name": server.name, "server_user": server.server_user.name}


def server_ref(server):
    """What events say about a server."""
    return {"id": server.id, "name": server.name, "address": server.address, "os": server.os, "state": server.state}


def agent_last_seen_at(server):
    used = [t.last_used_at for t in server.agent_tokens if t.last_used_at is not None]
    return max(used, default=None)


def server_detail(server, requests=0):
    return dict(
        list_row(server.id, server.name, server.address, server.state, running_versions(server), requests),
        os=server.os,
        ssh_port=server.ssh_port,
        ssh_user=server.ssh_user,
        ssh_auth="key" if server.ssh_private_key_sealed else "password" if server.ssh_password_sealed else None,
        components=[
            {"name": c.name, "version": c.version, "state": c.state, "updated_at": c.updated_at} for c in server.components
        ],
        monitoring_api_ip=server.monitoring_api_ip,
        communication_type=server.communication_type,
        runtime=server.runtime,
        agent_last_seen_at=agent_last_seen_at(server),
        server_user=server.server_user.name,
        created_at=server.created_at,
        updated_at=server.updated_at,
    )


class Servers:
    def __init__(self, session, secret_box, identity):
        self.session = session
        self.box = secret_box
        self.identity = identity  # server users are users

    def get(self, server_id, lock=False):
        # lock: the state follows the components, so changes of either wait for each other (events come in parallel).
        server = self.session.get(Server, server_id, with_for_update=lock)
        if server is None:
            raise ServerNotFound(f"no server with id {server_id}")
        return server

    def _flush_unique(self, name):
        try:
            self.session.flush()
        except IntegrityError as exc:
            self.session.rollback()
            if "uq_servers_name_key" in str(exc.orig):
                raise DuplicateName(
                    f"a server named {name} already exists", {"name": [f"a server named {name} already exists"]}
                ) from None
            raise

    def create(self, principal, data):
        require_role(principal, "operator")
        if data.get("server_user") and not is_admin(principal) and data["server_user"] != principal["name"]:
            raise PermissionDenied("only admins may make another user the server user")
        server = Server(
            name=data["name"],
            address=data["address"],
            os=data["os"],
            ssh_port=data["ssh_port"],
            ssh_user=data["ssh_user"],
            ssh_password_sealed=self.box.seal(data.get("ssh_password")),
            ssh_private_key_sealed=self.box.seal(data.get("ssh_private_key")),
            monitoring_api_ip=data.get("monitoring_api_ip"),
            communication_type=data.get("communication_type"),
            runtime=data["runtime"],
            state="unknown",
            server_user=self.identity.server_user(data.get("server_user")),
            components=[ServerComponent(name=name, state="not_installed") for name in data["components"]],
        )
        self.session.add(server)
        self._flush_unique(data["name"])
        return server

    def update(self, principal, server_id, changes):
        server = self.get(server_id)
        require_may_change(principal, server_rule_view(server))
        changed = []
        for field in UPDATABLE:
            if field in changes and getattr(server, field) != changes[field]:
                setattr(server, field, changes[field])
                changed.append(field)
        # Setting one SSH secret replaces the other: a server has one way in.
        if "ssh_password" in changes:
            server.ssh_password_sealed = self.box.seal(changes["ssh_password"])
            if changes["ssh_password"]:
                server.ssh_private_key_sealed = None
            changed.append("ssh_password")
        if "ssh_private_key" in changes:
            server.ssh_private_key_sealed = self.box.seal(changes["ssh_private_key"])
            if changes["ssh_private_key"]:
                server.ssh_password_sealed = None
            changed.append("ssh_private_key")
        if "components" in changes:
            wanted = list(changes["components"])
            kept = [c for c in server.components if c.name in wanted]
            have = {c.name for c in kept}
            server.components = kept + [ServerComponent(name=n, state="not_installed") for n in wanted if n not in have]
            changed.append("components")
        if "server_user" in changes and changes["server_user"] != server.server_user.name:
            if not is_admin(principal):
                raise PermissionDenied("only admins may change the server user")
            server.server_user = self.identity.server_user(changes["server_user"])
            changed.append("server_user")
        self._flush_unique(changes.get("name", server.name))
        return server, changed

    def delete(self, principal, server_id):
        """Removes the server, its agent tokens and a server user generated for it (with that user's tokens):
        (its ref for server_deleted, whose tokens went for tokens_revoked)."""
        server = self.get(server_id)
        require_may_change(principal, server_rule_view(server), "delete")
        ref = server_ref(server)
        owner = server.server_user
        revoked = {"user_ids": [], "server_ids": [server.id]}
        self.session.delete(server)
        self.session.flush()
        if owner.auto_created:
            # The generated server user existed only for this server (and its agent token).
            revoked["user_ids"].append(owner.id)
            self.session.delete(owner)
            self.session.flush()
        return ref, revoked

    def page(self, search=None, sort="name", state=None, page=1, per_page=25, os=None, runtime=None):
        """One page of the fleet list as rows, and the total (fleet.py: from memory, never stale)."""
        entries, total = FLEET.page(self.session.connection(), search, sort, state, page, per_page, os, runtime)
        return [e.row for e in entries], total

    def prune_fleet_changes(self):
        prune_changes(self.session.connection())

    def set_component(self, server_id, name, state, version=None):
        server = self.get(server_id, lock=True)
        component = self._component(server, name)
        component.state = state
        component.version = version
        self._follow_components(server)
        self.session.flush()
        return server

    @staticmethod
    def _component(server, name):
        component = next((c for c in server.components if c.name == name), None)
        if component is None:
            component = ServerComponent(name=name)
            server.components.append(component)
        return component

    @staticmethod
    def _follow_components(server):
        """Up servers are running or stopped by their components; down stays down until a heartbeat comes."""
        if server.state != "down":
            server.state = "running" if any(c.state == "running" for c in server.components) else "stopped"

    def record_reported_versions(self, server_id, versions):
        """A heartbeat said what runs on the server: that is what is installed and running, whoever installed it
        (a push install, or the manual one this record never saw). A component it no longer reports is stopped."""
        server = self.session.get(Server, server_id, with_for_update=True)
        if server is None:  # deleted meanwhile
            return None
        for component in server.components:
            if component.name not in versions and component.state == "running":
                component.state = "stopped"
        for name, version in versions.items():
            if name in COMPONENTS:
                component = self._component(server, name)
                component.state, component.version = "running", version
        self._follow_components(server)
        self.session.flush()
        return server

    def record_liveness(self, server_id, liveness):
        """monitoring-ingest saw the server go up or down: keep the stored state in step."""
        server = self.session.get(Server, server_id, with_for_update=True)
        if server is None:  # deleted meanwhile
            return None
        server.state = "down" if liveness == "down" else "stopped"
        self._follow_components(server)
        self.session.flush()
        return server

    def stored_versions(self):
        return [{"id": s.id, "name": s.name, "versions": running_versions(s)}
                for s in self.session.scalars(select(Server).order_by(Server.id))]

    def credentials(self, server_id):
        """SSH credentials for the provisioner and updater, the password or key sealed for the broker
        (shared/ssh.py's ``open_credentials`` opens them where they connect); never for the API."""
        server = self.get(server_id)
        return {
            "address": server.address,
            "port": server.ssh_port,
            "user": server.ssh_user,
            "password": self.box.seal_for(SSH_PASSWORD, self.box.open(server.ssh_password_sealed)),
            "private_key": self.box.seal_for(SSH_PRIVATE_KEY, self.box.open(server.ssh_private_key_sealed)),
        }

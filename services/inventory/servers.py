"""Managed servers: registration, changes, the fleet list, component states."""
from sqlalchemy.exc import IntegrityError

from services.inventory.fleet import FLEET, list_row
from services.inventory.identity import Identity
from services.inventory.models import Server, ServerComponent
from shared.authz import is_admin, require_role
from shared.errors import DuplicateName, PermissionDenied, ServerNotFound

UPDATABLE = ("name", "address", "os", "ssh_port", "ssh_user", "monitoring_api_ip", "runtime")


def running_versions(server):
    return {c.name: c.version for c in server.components if c.state == "running" and c.version}


def server_ref(server):
    """What events say about a server."""
    return {"id": server.id, "name": server.name, "address": server.address, "os": server.os, "state": server.state}


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
        runtime=server.runtime,
        server_user=server.server_user.name,
        created_at=server.created_at,
        updated_at=server.updated_at,
    )


class Servers:
    def __init__(self, session, secret_box):
        self.session = session
        self.box = secret_box
        self.identity = Identity(session)

    def get(self, server_id):
        server = self.session.get(Server, server_id)
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
            runtime=data["runtime"],
            state="unknown",
            server_user=self.identity.server_user(data.get("server_user")),
            components=[ServerComponent(name=name, state="not_installed") for name in data["components"]],
        )
        self.session.add(server)
        self._flush_unique(data["name"])
        return server

    def check_may_change(self, principal, server):
        """Only the server's own server user, or an admin, may change a server."""
        if is_admin(principal) or principal.get("user_id") == server.server_user_id:
            return
        raise PermissionDenied(f"only {server.server_user.name} (the server user) or an admin may change {server.name}")

    def update(self, principal, server_id, changes):
        server = self.get(server_id)
        self.check_may_change(principal, server)
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
        server = self.get(server_id)
        self.check_may_change(principal, server)
        ref = server_ref(server)
        owner = server.server_user
        self.session.delete(server)
        self.session.flush()
        if owner.auto_created:
            # The generated server user existed only for this server (and its agent token).
            self.session.delete(owner)
            self.session.flush()
        return ref

    def page(self, search=None, sort="name", state=None, page=1, per_page=25):
        """One page of the fleet list as rows, and the total (fleet.py: from memory, never stale)."""
        entries, total = FLEET.page(self.session.connection(), search, sort, state, page, per_page)
        return [e.row for e in entries], total

    def set_component(self, server_id, name, state, version=None):
        server = self.get(server_id)
        component = next((c for c in server.components if c.name == name), None)
        if component is None:
            component = ServerComponent(name=name)
            server.components.append(component)
        component.state = state
        component.version = version
        server.state = "running" if any(c.state == "running" for c in server.components) else "stopped"
        self.session.flush()
        return server

    def record_liveness(self, server_id, liveness):
        """monitoring-ingest saw the server go up or down: keep the stored state in step."""
        server = self.session.get(Server, server_id)
        if server is None:  # deleted meanwhile
            return None
        if liveness == "down":
            server.state = "down"
        else:
            server.state = "running" if any(c.state == "running" for c in server.components) else "stopped"
        self.session.flush()
        return server

    def credentials(self, server_id):
        """SSH credentials for the provisioner and updater; never for the API."""
        server = self.get(server_id)
        return {
            "address": server.address,
            "port": server.ssh_port,
            "user": server.ssh_user,
            "password": self.box.open(server.ssh_password_sealed),
            "private_key": self.box.open(server.ssh_private_key_sealed),
        }

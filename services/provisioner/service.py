"""The provisioner's RPC entrypoints: setup bundles, push installs as tasks, task logs, cleanup."""
import base64

from nameko.timer import timer
from sqlalchemy import text

from services.provisioner.components import install_steps
from services.provisioner.dependencies import TaskRunner
from services.provisioner.models import Base
from shared.authz import is_admin, require_role
from shared.dependencies import DatabaseSession, RequestContext, rpc
from shared.errors import PermissionDenied
from shared.schemas import load_or_raise
from shared.schemas import provisioner as schemas
from shared.schemas import tasks as task_schemas

# Installer facts read from the server when a task is queued (with the requester's rights).
SERVER_FIELDS = ("id", "name", "runtime", "components", "ssh_user", "monitoring_api_ip")


def _may_change(principal, server):
    """Installing changes a server: its server user or an admin, as for any change."""
    if not (is_admin(principal) or principal.get("name") == server["server_user"]):
        raise PermissionDenied(f"only {server['server_user']} (the server user) or an admin may install {server['name']}")


class ProvisionerService:
    name = "provisioner"

    db = DatabaseSession(Base)
    provisioning = TaskRunner()
    request_id = RequestContext()

    @rpc
    def health(self):
        self.db.execute(text("SELECT 1"))
        return {"service": self.name, "database": "ok"}

    def _server_for_change(self, principal, server_id):
        server = self.provisioning.inventory.get_server(principal, server_id)
        _may_change(principal, server)
        return {"id": server["id"], "name": server["name"], "runtime": server["runtime"],
                "components": [c["name"] for c in server["components"]], "ssh_user": server["ssh_user"],
                "monitoring_api_ip": server["monitoring_api_ip"]}

    @rpc
    def push_install(self, principal, server_id, data=None):
        load_or_raise(schemas.PushInstall(), data or {}, "push install")
        server = self._server_for_change(principal, server_id)
        task = self.provisioning.store.create(
            "install", server["id"], server["name"], {"server": server, "requested_by": principal["name"]},
            principal["name"], len(install_steps()),
        )
        self.provisioning.kick()
        return task_schemas.Task().dump(task)

    @rpc
    def bundle(self, principal, server_id):
        """The setup bundle for a manual install: {filename, sha256, size_bytes, content (base64)}."""
        server = self._server_for_change(principal, server_id)
        filename, data, sha256 = self.provisioning.issuer.issue(server, "download", principal["name"])
        info = schemas.BundleInfo().dump({"server_id": server_id, "filename": filename, "sha256": sha256,
                                          "size_bytes": len(data)})
        return dict(info, content=base64.b64encode(data).decode())

    @rpc
    def get_task(self, principal, task_id):
        require_role(principal, "viewer")
        task, _ = self.provisioning.store.get(task_id)
        return task_schemas.Task().dump(task)

    @rpc
    def task_log(self, principal, task_id):
        require_role(principal, "viewer")
        task, steps = self.provisioning.store.get(task_id)
        return task_schemas.TaskLog().dump({"task_id": task["id"], "state": task["state"], "steps": steps})

    @rpc
    def forget_host_key(self, principal, server_id):
        """After a server was legitimately reinstalled: trust the key it shows next time."""
        self._server_for_change(principal, server_id)
        return {"server_id": server_id, "forgotten": self.provisioning.host_keys.forget(server_id)}

    @rpc
    def pinned_host_key(self, server_id):
        """For the updater (never the API): the pinned (key_type, base64), or None before the first install."""
        return self.provisioning.host_keys.pinned(server_id)

    @rpc
    def cleanup_server(self, principal, server_id):
        """Before the inventory deletes a server: remove what was installed on it (best effort)."""
        server = self.provisioning.inventory.get_server(principal, server_id)
        _may_change(principal, server)
        return self.provisioning.cleanup.remove(server_id)

    @timer(interval=2)
    def poll_tasks(self):
        self.provisioning.reap()
        self.provisioning.poll()

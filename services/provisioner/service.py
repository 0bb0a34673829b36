"""The provisioner's RPC entrypoints: setup bundles, push installs as tasks, task logs, cleanup."""
import base64
import time
from datetime import datetime

from nameko.events import event_handler
from nameko.timer import timer

from services.provisioner.install import install_steps
from services.provisioner.dependencies import InstallRunner
from services.provisioner.models import Base, idempotency_keys
from services.provisioner.reconcile import Reconciler, server_disagreements
from shared.authz import require_may_change, require_role
from shared.crypto import SETUP_BUNDLE
from shared.db import ping
from shared.dependencies import DatabaseSession, Events, IdempotencyKeys, RequestContext, RpcProxy, rpc
from shared.errors import StewardError
from shared.events import load_event
from shared.schemas import load_or_raise
from shared.schemas import provisioner as schemas
from shared.schemas import tasks as task_schemas
from shared.tasks import task_dict
from shared.task_runner import TaskQueries

# Installer facts read from the server when a task is queued (with the requester's rights).
SERVER_FIELDS = ("id", "name", "address", "runtime", "components", "ssh_user", "monitoring_api_ip", "communication_type")
# After a failure that is not the event's fault (the broker's management API is away), wait
# before the event goes back to the queue, so a replica does not spin on it.
REQUEUE_PAUSE_SECONDS = 1.0


def _moment(iso):
    """A time another service sent (ISO 8601 over RPC), for a schema to dump again."""
    return datetime.fromisoformat(iso) if iso else None


class ProvisionerService(TaskQueries):
    name = "provisioner"

    db = DatabaseSession(Base)
    idempotency = IdempotencyKeys(idempotency_keys)
    events = Events()  # the outbox and its relay; the installs emit through it
    provisioning = InstallRunner()
    inventory = RpcProxy("inventory")
    monitoring = RpcProxy("monitoring_ingest")
    request_id = RequestContext()

    server_users_may_cancel = True  # TaskQueries.cancel_task: who may start an install may stop it

    def task_workers(self):
        return self.provisioning

    @rpc
    def health(self):
        return {"service": self.name, "database": ping(self.db)}

    def _server_for_change(self, principal, server_id, action):
        server = self.inventory.get_server(principal, server_id)
        require_may_change(principal, server, action)
        return {"id": server["id"], "name": server["name"], "address": server["address"], "runtime": server["runtime"],
                "components": [c["name"] for c in server["components"]], "ssh_user": server["ssh_user"],
                "monitoring_api_ip": server["monitoring_api_ip"], "communication_type": server["communication_type"]}

    @rpc
    def push_install(self, principal, server_id, data=None):
        def create():
            load_or_raise(schemas.PushInstall(), data or {}, "push install")
            server = self._server_for_change(principal, server_id, "install")
            task = self.provisioning.store.create(
                "install", server["id"], server["name"], {"server": server, "requested_by": principal["name"]},
                principal["name"], len(install_steps()), session=self.db,
            )
            return task_schemas.Task().dump(task_dict(task))

        answer = self.idempotency.answer(self.db, principal, {"server_id": server_id, "data": data}, create)
        self.provisioning.kick()
        return answer

    @rpc
    def bundle(self, principal, server_id):
        """The setup bundle for a manual install: {filename, sha256, size_bytes, content (base64, sealed: it holds
        the agent's token and broker password)}."""
        server = self._server_for_change(principal, server_id, "download the setup bundle of")
        filename, data, sha256 = self.provisioning.issuer.issue(server, "download", principal["name"])
        info = schemas.BundleInfo().dump({"server_id": server_id, "filename": filename, "sha256": sha256,
                                          "size_bytes": len(data)})
        return dict(info, content=self.provisioning.secret_box.seal_for(SETUP_BUNDLE, base64.b64encode(data).decode()))

    @rpc
    def forget_host_key(self, principal, server_id):
        """After a server was legitimately reinstalled: trust the key it shows next time."""
        self._server_for_change(principal, server_id, "forget the host key of")
        return {"server_id": server_id, "forgotten": self.provisioning.host_keys.forget(server_id)}

    @rpc
    def pinned_host_key(self, server_id):
        """For the updater (never the API): the pinned (key_type, base64), or None before the first install."""
        return self.provisioning.host_keys.pinned(server_id)

    @rpc
    def cleanup_server(self, principal, server_id):
        """Before the inventory deletes a server: remove what was installed on it (best effort)."""
        server = self.inventory.get_server(principal, server_id)
        require_may_change(principal, server, "delete")
        # What the server reported (a heartbeat: a state; its versions: components) counts as much as an
        # install task: a manual install leaves none.
        reported = server["state"] != "unknown" or any(c["state"] != "not_installed" for c in server["components"])
        return self.provisioning.cleanup.remove(server_id, reported_installed=reported)

    # -- reconcile and inspect ---------------------------------------------------
    def _users(self):
        return self.provisioning.issuer.rabbitmq_users()

    @rpc
    def inspect_server(self, principal, server_id):
        """A server's stored record beside what it reports, and where they disagree."""
        stored = self.inventory.get_server(principal, server_id)
        reported = self.monitoring.server_liveness(principal, server_id, {"limit": 1})
        present = self._users().has_agent_user(server_id)
        return schemas.ServerInspection().dump({
            "server_id": server_id, "name": stored["name"],
            "stored": {"state": stored["state"], "components": stored["components"],
                       "agent_last_seen_at": _moment(stored["agent_last_seen_at"])},
            "reported": {"state": reported["state"], "last_heartbeat_at": _moment(reported["last_heartbeat_at"]),
                         "versions": reported["versions"], "agent_version": reported["agent_version"]},
            "broker_user_present": present,
            "disagreements": server_disagreements(stored, reported, present),
        })

    @rpc
    def reconcile(self, principal, fix=False):
        """Every disagreement across the fleet; ``fix``: fix the safe ones (all of today's kinds are)."""
        require_role(principal, "admin")
        reconciler = Reconciler(self.inventory, self.monitoring, self._users, self.provisioning.gone_holders,
                                self.provisioning.reap)
        findings = reconciler.findings()
        if fix:
            findings = reconciler.fix(findings)
        return schemas.Reconciliation().dump({"fixed": fix, "findings": findings})

    @event_handler("inventory", "server_deleted", requeue_on_error=True)
    def handle_server_deleted(self, payload):
        """The server is gone, whether or not cleanup_server ran first (this service may have been away
        then): its RabbitMQ user and pinned host key go too. The event waits on its queue until they have.
        Idempotent (a repeat removes what is gone already), so repeats need no processed-ids table here."""
        server_id = load_event("server_deleted", payload)["server"]["id"]
        try:
            self.provisioning.cleanup.forget(server_id)
        except StewardError:
            time.sleep(REQUEUE_PAUSE_SECONDS)
            raise

    @timer(interval=2)
    def poll_tasks(self):
        self.provisioning.poll()

"""The provisioner's nameko dependencies: the task runner that claims queued tasks and
runs them in green threads, so long installs never block the service's RPCs."""
import logging
import socket
import uuid
from urllib.parse import urlsplit

import eventlet
from nameko.extensions import DependencyProvider
from nameko.standalone.events import event_dispatcher, get_event_exchange
from sqlalchemy.orm import sessionmaker

from services.provisioner.cleanup import Cleanup
from services.provisioner.host_keys import HostKeys
from services.provisioner.install import Installer
from services.provisioner.issuing import BundleIssuer
from services.provisioner.tasks import ReplicaLiveness, TaskStore
from shared.db import make_engine
from shared.events import build_event
from shared.rpc import RpcClient

log = logging.getLogger("provisioner")
SERVICE_NAME = "provisioner"


class _InventoryProxy:
    """inventory.<method>(*args) over the pooled RPC client."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, method):
        return lambda *args: self._client.call("inventory", method, *args)


class Provisioning:
    """What the service's entrypoints use: the stores, the issuer, cleanup, and ``kick``."""

    def __init__(self, provider):
        self._provider = provider
        self.store = provider.store
        self.issuer = provider.issuer
        self.cleanup = provider.cleanup
        self.inventory = provider.inventory
        self.host_keys = provider.host_keys

    def reap(self):
        self._provider.reap()

    def poll(self):
        self._provider.poll()

    def kick(self):
        """Claim and start queued tasks now rather than at the next poll."""
        self._provider.container.spawn_managed_thread(self._provider.poll)


class TaskRunner(DependencyProvider):
    def setup(self):
        config = self.container.config
        options = config.get("provisioner") or {}
        self.slots = int(options.get("max_parallel_installs", 32))
        self.replica = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.engine = make_engine(config["DATABASE_URL"], pool_size=int(options.get("pool_size", 10)))
        Session = sessionmaker(bind=self.engine, expire_on_commit=False)
        self.store = TaskStore(Session)
        self.host_keys = HostKeys(Session)
        self.rpc = RpcClient(config["AMQP_URI"], timeout=float(options.get("rpc_timeout_seconds", 30)),
                             caller="provisioner")
        self.inventory = _InventoryProxy(self.rpc)
        amqp = urlsplit(config["AMQP_URI"])
        self.issuer = BundleIssuer(Session, self.inventory, config.get("PUBLIC_URL", "http://127.0.0.1:8080"),
                                   options.get("rabbitmq_management_url") or None,
                                   (amqp.username or "guest", amqp.password or "guest"))
        self.cleanup = Cleanup(Session, self.host_keys, self.inventory,
                               lambda: self.issuer.rabbitmq_users(self.inventory.effective_settings()["rabbitmq"]))
        # Declared here too: a fresh vhost has no provisioner.events until something declares it.
        dispatch = event_dispatcher(config, declare=[get_event_exchange(SERVICE_NAME, config)])
        self.installer = Installer(self.store, self.host_keys, self.issuer, self.inventory,
                                   lambda name, **payload: dispatch(SERVICE_NAME, name, build_event(name, **payload)))
        self.liveness = ReplicaLiveness(self.engine, self.replica)
        self.pool = eventlet.GreenPool(self.slots)
        self.running = set()

    def start(self):
        self.liveness.hold()
        self.reap()

    def stop(self):
        self._interrupt("the provisioner replica running it was stopped")

    def kill(self):
        self._interrupt("the provisioner replica running it was killed")

    def _interrupt(self, reason):
        for thread in list(self.running):
            thread.kill()
        self.store.fail_interrupted(self.replica, reason)
        self.liveness.release()
        self.rpc.close()
        self.engine.dispose()

    def reap(self):
        """Fail the running tasks of replicas that are gone (crashed or stopped without saying)."""
        for replica in self.store.replicas_running_tasks() - {self.replica, None}:
            if self.liveness.is_gone(replica):
                for task in self.store.fail_interrupted(replica, "interrupted: the provisioner replica running it stopped"):
                    log.warning("task %s was interrupted (replica %s is gone)", task["id"], replica,
                                extra={"task_id": task["id"]})
                    self.installer.emit("install_finished", server_id=task["server_id"], server_name=task["server_name"],
                                        task_id=task["id"], state="failed", error=task["error"])

    def poll(self):
        for task_id in self.store.claim(self.replica, self.pool.free()):
            thread = self.pool.spawn(self._run, task_id)
            self.running.add(thread)
            thread.link(lambda gt: self.running.discard(gt))

    def _run(self, task_id):
        try:
            self.installer.run(task_id)
        except Exception:  # a bug must fail the task, not leave it running
            log.exception("install task %s crashed", task_id)
            self.store.finish(task_id, "failed", "internal error in the provisioner; see its log")

    def get_dependency(self, worker_ctx):
        return Provisioning(self)

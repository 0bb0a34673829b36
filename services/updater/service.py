"""The updater's entrypoints: RPC for the gateway, a durable work queue for long tasks, a repair sweep.

Starting an update or a rollout commits its rows and publishes a work message
to the durable queue ``updater.work``; whichever replica consumes it does the
work and the message is acknowledged only after that, so a replica that dies
mid-task hands it to another one (see tasks.Tasks.claim).
"""
import logging
from datetime import timedelta

import eventlet

from kombu import Exchange, Queue
from nameko.dependency_providers import Config
from nameko.messaging import Publisher, consume
from nameko.rpc import RpcProxy
from nameko.timer import timer
from sqlalchemy import text

from services.updater.catalog import Catalog, image_dict
from services.updater.diagnostics import Diagnostics, run_dict
from services.updater.hosts import Hosts
from services.updater.models import Base
from services.updater.registry import Registry
from services.updater.rollouts import Rollouts, rollout_dict
from services.updater.tasks import StepLog, Tasks, task_dict, task_log, utcnow
from services.updater.update import Update
from shared.authz import require_role
from shared.dependencies import DatabaseSession, Events, RequestContext, Secrets, rpc
from shared.errors import PermissionDenied, ServiceUnavailable
from shared.schemas import load_or_raise
from shared.schemas import updater as schemas

log = logging.getLogger("updater")
WORK_EXCHANGE = Exchange("updater.work", type="direct", durable=True)
WORK_QUEUE = Queue("updater.work", exchange=WORK_EXCHANGE, routing_key="work", durable=True)
# How the updater reads inventory when no user asked (work messages, sweeps).
SERVICE_PRINCIPAL = {"name": "updater", "role": "viewer", "scope": "service", "user_id": None}
STALE_QUEUED = timedelta(minutes=1)
RPC_TIMEOUT_SECONDS = 10


def may_update(principal, server_id):
    """Operators, or the server's own agent (pv_update.py run by hand on it)."""
    if principal.get("scope") == "agent":
        if principal.get("server_id") != server_id:
            raise PermissionDenied("an agent token may only update its own server")
        return
    require_role(principal, "operator")


class UpdaterService:
    name = "updater"

    db = DatabaseSession(Base)
    secrets = Secrets()
    events = Events()
    request_id = RequestContext()
    config = Config()
    inventory = RpcProxy("inventory")
    provisioner = RpcProxy("provisioner")
    monitoring = RpcProxy("monitoring_ingest")
    publish = Publisher(exchange=WORK_EXCHANGE, declare=[WORK_QUEUE])

    # -- collaborators -----------------------------------------------------------
    def _options(self):
        return self.config.get("updater") or {}

    def _update_settings(self):
        return self.inventory.effective_settings()["update"]

    def _catalog(self, update_settings=None):
        registry = None
        if update_settings is not None:
            registry = Registry(self._options().get("registry_url", ""), update_settings.get("repository_tokens"),
                                timeout_seconds=update_settings.get("api_timeout_ms", 30000) / 1000)
        return Catalog(self.db, schemas.storage_dir(self.config), registry)

    def _pinned_host_key(self, server_id):
        # nameko's proxy waits for ever; a provisioner that does not answer must not hold a worker.
        with eventlet.Timeout(RPC_TIMEOUT_SECONDS, ServiceUnavailable("the provisioner did not answer")):
            return self.provisioner.pinned_host_key(server_id)

    def _hosts(self):
        return Hosts(self.inventory, self._pinned_host_key, self._options())

    def _enqueue(self, messages):
        for message in messages:
            self.publish(message, routing_key="work")

    @rpc
    def health(self):
        self.db.execute(text("SELECT 1"))
        return {"service": self.name, "database": "ok"}

    # -- version catalog -----------------------------------------------------------
    @rpc
    def add_image(self, principal, upload):
        require_role(principal, "operator")
        upload = load_or_raise(schemas.ImageUpload(), upload, "upload")
        image = self._catalog().add_upload(upload, principal.get("name"))
        return schemas.Version().dump(image_dict(image))

    @rpc
    def list_versions(self, principal, query):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.VersionQuery(), query, "query")
        settings = self._update_settings()
        items = self._catalog(settings).versions(settings["mode"], query.get("component"))
        return schemas.VersionList().dump({"mode": settings["mode"], "items": items})

    # -- push update ------------------------------------------------------------------
    @rpc
    def push_update(self, principal, server_id, data):
        may_update(principal, server_id)
        data = load_or_raise(schemas.PushUpdate(), data, "update")
        server = self.inventory.get_server(SERVICE_PRINCIPAL, server_id)
        tasks = Tasks(self.db)
        task = tasks.create(server, data.get("component"), data.get("version"), principal.get("name"))
        message = tasks.dispatch(task)
        self.db.commit()
        self._enqueue([message])
        return schemas.TaskAccepted().dump({"task_id": task.id, "state": task.state})

    @rpc
    def get_task(self, principal, task_id):
        require_role(principal, "viewer")
        return schemas.UpdateTask().dump(task_dict(Tasks(self.db).get(task_id)))

    @rpc
    def get_task_log(self, principal, task_id):
        require_role(principal, "viewer")
        return task_log(Tasks(self.db).get(task_id))

    @rpc
    def list_tasks(self, principal, server_id):
        require_role(principal, "viewer")
        return schemas.UpdateTask(many=True).dump([task_dict(t) for t in Tasks(self.db).for_server(server_id)])

    @consume(WORK_QUEUE)
    def work(self, message):
        if "task_id" in message:
            self._run_task(message["task_id"], message.get("dispatch_id"))
        elif "rollout_id" in message:
            self._advance_rollout(message["rollout_id"])

    def _run_task(self, task_id, dispatch_id):
        tasks = Tasks(self.db)
        task = tasks.claim(task_id, dispatch_id)
        if task is None:
            return  # finished already, or another message runs it
        steps = StepLog(self.db, task, self.events.emit)
        settings = self._update_settings()
        hosts = self._hosts()
        try:
            server = self.inventory.get_server(SERVICE_PRINCIPAL, task.server_id)
            host = hosts.open(task.server_id)
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad credentials, server deleted: all end the task
            steps.finish("failed", f"cannot reach the server: {exc}")
            self.events.emit("update_finished", server_id=task.server_id, server_name=task.server_name,
                             task_id=task.id, state="failed", error=task.error)
        else:
            try:
                Update(self.db, steps, self._catalog(settings), settings["mode"], self.inventory, host,
                       self.events.emit).run(server)
            except Exception as exc:  # noqa: BLE001 - never leave a task "running" behind an unexpected error
                self.db.rollback()
                steps.finish("failed", f"the update stopped unexpectedly: {exc}")
                self.events.emit("update_finished", server_id=task.server_id, server_name=task.server_name,
                                 task_id=task.id, state="failed", error=task.error)
                log.exception("update task %s stopped unexpectedly", task.id)
            finally:
                host.connection.close()
        if task.rollout_id:
            self._enqueue([{"rollout_id": task.rollout_id}])

    # -- rollouts ---------------------------------------------------------------------
    def _select_servers(self, data):
        if data.get("server_ids"):
            return [self.inventory.get_server(SERVICE_PRINCIPAL, i) for i in dict.fromkeys(data["server_ids"])]
        query = {"per_page": 500, "page": 1}
        if data.get("search"):
            query["search"] = data["search"]
        else:
            query["state"] = "running"
        servers = []
        while True:
            page = self.inventory.list_servers(SERVICE_PRINCIPAL, query)
            servers.extend(page["items"])
            if len(servers) >= page["total"] or not page["items"]:
                return servers
            query["page"] += 1

    @rpc
    def create_rollout(self, principal, data):
        require_role(principal, "operator")
        data = load_or_raise(schemas.RolloutCreate(), data, "rollout")
        servers = self._select_servers(data)
        rollouts = Rollouts(self.db, Tasks(self.db))
        rollout = rollouts.create(data, servers, principal.get("name"))
        self.db.commit()
        self._advance_rollout(rollout.id)
        return schemas.Rollout().dump(rollout_dict(rollouts.get(rollout.id)))

    def _advance_rollout(self, rollout_id):
        tasks = Tasks(self.db)
        started = Rollouts(self.db, tasks).advance(rollout_id)
        messages = [tasks.dispatch(tasks.get(task_id)) for task_id in started]
        self.db.commit()
        self._enqueue(messages)

    @rpc
    def list_rollouts(self, principal):
        require_role(principal, "viewer")
        return schemas.Rollout(many=True).dump([rollout_dict(r) for r in Rollouts(self.db, None).list()])

    @rpc
    def get_rollout(self, principal, rollout_id):
        require_role(principal, "viewer")
        return schemas.Rollout().dump(rollout_dict(Rollouts(self.db, None).get(rollout_id)))

    @rpc
    def resume_rollout(self, principal, rollout_id):
        require_role(principal, "operator")
        Rollouts(self.db, None).resume(rollout_id)
        self.db.commit()
        self._advance_rollout(rollout_id)
        return self.get_rollout(principal, rollout_id)

    @rpc
    def cancel_rollout(self, principal, rollout_id):
        require_role(principal, "operator")
        Rollouts(self.db, None).cancel(rollout_id)
        self.db.commit()
        return self.get_rollout(principal, rollout_id)

    @timer(interval=30)
    def sweep(self):
        """Repair what a lost message would leave behind: queued tasks never started, rollouts not moving."""
        tasks = Tasks(self.db)
        messages = tasks.redispatch_stale(utcnow() - STALE_QUEUED)
        self.db.commit()
        self._enqueue(messages)
        for rollout_id in Rollouts(self.db, tasks).active_ids():
            self._advance_rollout(rollout_id)

    # -- diagnostics -------------------------------------------------------------------
    def _heartbeat_check(self, server_id):
        try:
            status = self.monitoring.fleet_status([server_id])[str(server_id)]
        except Exception as exc:  # noqa: BLE001 - monitoring absent or down: say so, do not guess
            return "unknown", f"monitoring-ingest did not answer ({exc.__class__.__name__}); heartbeat freshness unknown"
        last = status.get("last_heartbeat_at")
        if status.get("state") == "up":
            return "passed", f"heartbeats are fresh (last at {last}, {status.get('requests', 0)} in the last 2 minutes)"
        if last is None:
            return "failed", "no heartbeat has ever arrived from this server"
        return "failed", f"heartbeats stopped: the last arrived at {last}"

    @rpc
    def run_diagnostics(self, principal, server_id):
        require_role(principal, "operator")
        server = self.inventory.get_server(SERVICE_PRINCIPAL, server_id)
        hosts = self._hosts()
        run = Diagnostics(self.db).run(server, principal.get("name"), lambda: hosts.connect(server_id),
                                       lambda: self._heartbeat_check(server_id))
        return schemas.DiagnosticsRun().dump(run_dict(run))

    @rpc
    def get_diagnostics(self, principal, server_id, run_id):
        require_role(principal, "viewer")
        return schemas.DiagnosticsRun().dump(run_dict(Diagnostics(self.db).get(server_id, run_id)))

    @rpc
    def get_diagnostics_log(self, principal, server_id, run_id):
        require_role(principal, "viewer")
        return Diagnostics(self.db).get(server_id, run_id).log

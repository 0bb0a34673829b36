"""The updater's entrypoints: RPC for the gateway, a poll that starts queued update tasks, a repair sweep.

Starting an update or a rollout commits its task rows, queued; a replica's task runner
(shared/task_runner.py: TaskRunner) claims them under its lease and runs them, and moves
a task's rollout on when the task ends. A replica that dies or loses its lease hands its
tasks to no one silently: they are failed, once, with ``update_finished``.
"""
import logging

from nameko.dependency_providers import Config
from nameko.events import event_handler
from nameko.timer import timer

from services.updater.catalog import image_dict
from services.updater.dependencies import SERVICE_PRINCIPAL, UpdateRunner, make_catalog
from services.updater import diagnostics
from services.updater.hosts import Hosts
from services.updater.models import Base, Task, idempotency_keys
from services.updater.rollouts import Rollouts, rollout_dict
from services.updater.tasks import KIND, overlapping, update_task_dict
from services.updater.versions import is_newer
from shared.authz import is_admin, may_change, require_may_change, require_role
from shared.db import ping
from shared.components import INSTALLABLE
from shared.dependencies import DatabaseSession, Events, IdempotencyKeys, RequestContext, RpcProxy, Secrets, rpc
from shared.errors import OperationInProgress, PermissionDenied, ServerNotFound, StewardError
from shared.events import load_event
from shared.schemas import load_or_raise
from shared.schemas import updater as schemas
from shared.tasks import log_text
from shared.task_runner import TaskQueries

log = logging.getLogger("updater")


class UpdaterService(TaskQueries):
    name = "updater"

    db = DatabaseSession(Base)
    idempotency = IdempotencyKeys(idempotency_keys)
    secrets = Secrets()
    events = Events()  # the outbox and its relay; the update tasks emit through it
    updates = UpdateRunner()
    request_id = RequestContext()
    config = Config()
    inventory = RpcProxy("inventory")
    provisioner = RpcProxy("provisioner")

    # -- collaborators -----------------------------------------------------------
    def _options(self):
        return self.config.get("updater") or {}

    def _update_settings(self):
        return self.inventory.effective_settings()["update"]

    def _catalog(self, update_settings=None):
        return make_catalog(self.db, self.config, update_settings, self.inventory, self.secrets)

    def _hosts(self):
        return Hosts(self.inventory, self.provisioner.pinned_host_key, self._options(), self.secrets)

    server_users_may_cancel = True  # TaskQueries.cancel_task: who may start an update may stop it

    def task_workers(self):
        return self.updates

    @rpc
    def health(self):
        return {"service": self.name, "database": ping(self.db)}

    # -- version catalog -----------------------------------------------------------
    @rpc
    def add_image(self, principal, upload):
        # The catalog is every server's: an image in it is what "update to the newest" installs anywhere.
        require_role(principal, "admin")
        upload = load_or_raise(schemas.ImageUpload(), upload, "upload")
        catalog = self._catalog()
        try:
            # The same image again: the spool's file name is new each time, the content is not.
            return self.idempotency.answer(
                self.db, principal, {k: upload.get(k) for k in ("sha256", "component")},
                lambda: schemas.Version().dump(image_dict(catalog.add_upload(upload, principal.get("name")))))
        finally:
            catalog.discard_upload(upload)  # a repeat's upload is not taken in

    @rpc
    def list_versions(self, principal, query):
        require_role(principal, "viewer")
        query = load_or_raise(schemas.VersionQuery(), query, "query")
        settings = self._update_settings()
        items = self._catalog(settings).versions(settings["mode"], query.get("component"))
        return schemas.VersionList().dump({"mode": settings["mode"], "items": items})

    # -- push update and tasks ------------------------------------------------------
    @rpc
    def push_update(self, principal, server_id, data):
        def create():
            update = load_or_raise(schemas.PushUpdate(), data, "update")
            server = self.inventory.get_server(SERVICE_PRINCIPAL, server_id)
            require_may_change(principal, server, "update", agent=True)  # pv_update.py on the server: its own agent
            component = update.get("component")
            task = self.updates.store.create(KIND, server["id"], server["name"], {}, principal.get("name"),
                                             session=self.db, overlaps=overlapping(Task, component),
                                             component=component, target_version=update.get("version"), outcome={})
            return schemas.TaskAccepted().dump({"task_id": task.id, "state": task.state})

        answer = self.idempotency.answer(self.db, principal, {"server_id": server_id, "data": data}, create)
        self.updates.kick()
        return answer

    @event_handler("provisioner", "install_finished")
    def handle_install_finished(self, payload):
        """A push install starts the components at the versions the bundle ships; where the catalog holds a
        newer one, an update follows at once, so the server runs what the catalog offers (a repeated event
        finds it running already, or the update queued: nothing more)."""
        event = load_event("install_finished", payload)
        if event["state"] != "succeeded":
            return
        try:
            server = self.inventory.get_server(SERVICE_PRINCIPAL, event["server_id"])
            settings = self._update_settings()
            catalog = self._catalog(settings)
            behind = [c["name"] for c in server["components"] if c["state"] == "running" and c["name"] in INSTALLABLE
                      # what the catalog held when the install ended: a version uploaded since is the operator's next move
                      and (newest := catalog.newest_version(settings["mode"], c["name"], event["occurred_at"]))
                      and c["version"]
                      and is_newer(newest, c["version"])]
            if not behind:
                return
            task = self.updates.store.create(KIND, server["id"], server["name"], {}, "install", session=self.db,
                                             overlaps=overlapping(Task, None), component=None, target_version=None,
                                             outcome={})
            self.db.commit()
        except OperationInProgress:
            self.db.rollback()
            return
        except StewardError as exc:  # the registry or the server went away: the install stands, say why
            self.db.rollback()
            log.warning("no update after the install of server %s: %s", event["server_id"], exc.message)
            return
        log.info("server %s: the catalog holds newer %s than the install; update task %s follows",
                 server["name"], ", ".join(behind), task.id)
        self.updates.kick()

    @rpc
    def get_update_task(self, principal, task_id):
        require_role(principal, "viewer")
        return schemas.UpdateTask().dump(update_task_dict(self.updates.store.row(task_id)))

    @rpc
    def get_update_task_log(self, principal, task_id):
        require_role(principal, "viewer")
        return log_text(*self.updates.store.get(task_id))

    @rpc
    def server_update_tasks(self, principal, server_id):
        require_role(principal, "viewer")
        rows = self.updates.store.rows({"server_id": server_id}, limit=20)
        return schemas.UpdateTask(many=True).dump([update_task_dict(t) for t in rows])

    # -- rollouts ---------------------------------------------------------------------
    def _select_servers(self, principal, data):
        """The servers a rollout takes: those named, each of which the caller must be allowed to change, or those a
        search or ``all_running`` finds, of which it takes only the ones the caller may change."""
        if data.get("server_ids"):
            servers = [self.inventory.get_server(SERVICE_PRINCIPAL, i) for i in dict.fromkeys(data["server_ids"])]
            refused = [s["name"] for s in servers if not may_change(principal, s)]
            if refused:
                raise PermissionDenied(f"only their server user or an admin may update {', '.join(refused)}",
                                       {"server_ids": [f"not yours to update: {', '.join(refused)}"]})
            return servers
        query = {"per_page": 500, "page": 1}
        if data.get("search"):
            query["search"] = data["search"]
        else:
            query["state"] = "running"
        servers, found = [], 0
        while True:
            page = self.inventory.list_servers(SERVICE_PRINCIPAL, query)
            found += len(page["items"])
            if is_admin(principal):
                servers.extend(page["items"])
            else:  # the list does not say whose a server is; a server's own record does
                servers.extend(server for server in (self.inventory.get_server(SERVICE_PRINCIPAL, row["id"])
                                                     for row in page["items"]) if may_change(principal, server))
            if found >= page["total"] or not page["items"]:
                return servers
            query["page"] += 1

    @rpc
    def create_rollout(self, principal, data):
        require_role(principal, "operator")

        def create():
            wanted = load_or_raise(schemas.RolloutCreate(), data, "rollout")
            rollouts = Rollouts(self.db, self.updates.store)
            rollout = rollouts.create(wanted, self._select_servers(principal, wanted), principal.get("name"))
            rollouts.advance(rollout.id)  # the first wave's tasks, queued with the rollout and its answer
            return schemas.Rollout().dump(rollout_dict(rollouts.get(rollout.id)))

        answer = self.idempotency.answer(self.db, principal, data, create)
        self.updates.kick()
        return answer

    @rpc
    def list_rollouts(self, principal):
        require_role(principal, "viewer")
        return schemas.Rollout(many=True).dump([rollout_dict(r) for r in Rollouts(self.db, None).list()])

    @rpc
    def get_rollout(self, principal, rollout_id):
        require_role(principal, "viewer")
        return schemas.Rollout().dump(rollout_dict(Rollouts(self.db, None).get(rollout_id)))

    def _require_may_change_rollout(self, principal, rollout_id, action):
        """Resuming or cancelling decides what happens to a rollout's servers still pending: the caller must be
        allowed to change each of them (servers deleted since are nobody's)."""
        require_role(principal, "operator")
        for entry in Rollouts(self.db, None).get(rollout_id).servers:
            if entry.state != "pending":
                continue
            try:
                server = self.inventory.get_server(SERVICE_PRINCIPAL, entry.server_id)
            except ServerNotFound:
                continue
            require_may_change(principal, server, f"{action} rollout {rollout_id}, which updates")
        self.db.rollback()  # the checks read without a lock; resume and cancel lock the rollout themselves

    @rpc
    def resume_rollout(self, principal, rollout_id):
        self._require_may_change_rollout(principal, rollout_id, "resume")
        Rollouts(self.db, None).resume(rollout_id)
        self.db.commit()
        self.updates.advance_rollout(rollout_id)
        return self.get_rollout(principal, rollout_id)

    @rpc
    def cancel_rollout(self, principal, rollout_id):
        self._require_may_change_rollout(principal, rollout_id, "cancel")
        Rollouts(self.db, None).cancel(rollout_id)
        self.db.commit()
        return self.get_rollout(principal, rollout_id)

    @timer(interval=2)
    def poll_tasks(self):
        self.updates.poll()

    @timer(interval=30)
    def sweep(self):
        """Move on rollouts that did not move when their last task ended (its replica died, say)."""
        for rollout_id in Rollouts(self.db, None).active_ids():
            self.updates.advance_rollout(rollout_id)
        self.db.rollback()

    # -- diagnostics (tasks of kind diagnostics: services/updater/diagnostics.py) ----------
    @rpc
    def run_diagnostics(self, principal, server_id):
        server = self.inventory.get_server(SERVICE_PRINCIPAL, server_id)
        require_may_change(principal, server, "run diagnostics (with its SSH credentials) on")
        def create():
            task = self.updates.store.create(diagnostics.KIND, server["id"], server["name"], {}, principal.get("name"),
                                             session=self.db, overlaps=Task.kind == diagnostics.KIND, outcome={})
            return schemas.DiagnosticsRun().dump(diagnostics.diagnostics_dict(task))

        answer = self.idempotency.answer(self.db, principal, {"server_id": server_id}, create)
        self.updates.kick()
        return answer

    @rpc
    def list_diagnostics(self, principal, server_id):
        require_role(principal, "viewer")
        rows = self.updates.store.rows({"server_id": server_id, "kind": diagnostics.KIND}, limit=50)
        return schemas.DiagnosticsRun(many=True).dump([diagnostics.diagnostics_dict(t) for t in rows])

    @rpc
    def get_diagnostics(self, principal, server_id, run_id):
        require_role(principal, "viewer")
        return schemas.DiagnosticsRun().dump(
            diagnostics.diagnostics_dict(diagnostics.diagnostics_of(self.updates.store, server_id, run_id)))

    @rpc
    def get_diagnostics_log(self, principal, server_id, run_id):
        require_role(principal, "viewer")
        diagnostics.diagnostics_of(self.updates.store, server_id, run_id)
        return log_text(*self.updates.store.get(run_id))

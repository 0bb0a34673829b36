"""The updater's nameko dependency: shared/'s task runner, running update and diagnostics tasks and
moving update tasks' rollouts on as they end."""
import logging

from services.updater import diagnostics
from services.updater.catalog import Catalog
from services.updater.hosts import Hosts
from services.updater.models import Lease, Task, TaskStep
from services.updater.registry import Registry
from services.updater.rollouts import Rollouts
from services.updater.tasks import StepLog
from services.updater.update import Update
from shared.crypto import REPOSITORY_TOKEN, SecretBox
from shared.task_runner import TaskCancelled, TaskRunner, TaskWorkers
from shared.leases import LeaseLost
from shared.schemas.updater import storage_dir

log = logging.getLogger("updater")
# How the updater reads inventory when no user asked (tasks, sweeps).
SERVICE_PRINCIPAL = {"name": "updater", "role": "viewer", "scope": "service", "user_id": None}


def make_catalog(session, config, update_settings=None, inventory=None, secret_box=None):
    """The version catalog; with the update settings it can reach the registry (internet mode), with the repository
    tokens inventory hands over sealed (only internet mode asks for them) and ``secret_box`` opens here."""
    options = config.get("updater") or {}
    registry = None
    if update_settings is not None and update_settings["mode"] == "internet":
        tokens = {component: secret_box.open_sealed(REPOSITORY_TOKEN, token)
                  for component, token in inventory.repository_tokens().items()}
        registry = Registry(options.get("registry_url", ""), tokens,
                            timeout_seconds=update_settings.get("api_timeout_ms", 30000) / 1000)
    return Catalog(session, storage_dir(config), registry)


class Updates(TaskWorkers):
    """What the service's entrypoints use: the task store, ``kick``, and ``advance_rollout``."""

    def __init__(self, runner):
        super().__init__(runner)
        self.advance_rollout = runner.advance_rollout


class UpdateRunner(TaskRunner):
    task_model, step_model, lease_model = Task, TaskStep, Lease
    kinds = ("update", diagnostics.KIND)
    finished_event = {"update": "update_finished", diagnostics.KIND: "diagnostics_finished"}
    section = "updater"

    def setup(self):
        super().setup()
        self.inventory = self.task_client("inventory")
        self.monitoring = self.task_client("monitoring_ingest")
        self.secret_box = SecretBox(self.container.config["SECRET_KEY"])  # opens what inventory hands over sealed
        self.hosts = Hosts(self.inventory, self.task_client("provisioner").pinned_host_key, self.options, self.secret_box)

    def run(self, task_id):
        task = self.store.row(task_id)
        if task.kind == diagnostics.KIND:
            return self.diagnose(task)
        steps = StepLog(self.store, task, self.holder, self.lease.held, cancel_point=self.cancel_point)
        try:
            settings = self.inventory.effective_settings()["update"]
            server = self.inventory.get_server(SERVICE_PRINCIPAL, task.server_id)
            host = self.hosts.open(task.server_id)
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad credentials, server deleted: all end the task
            self._failed(steps, f"cannot reach the server: {exc}")
        else:
            with self.Session() as session:
                try:
                    catalog = make_catalog(session, self.container.config, settings, self.inventory, self.secret_box)
                    Update(session, steps, catalog, settings["mode"], self.inventory, host).run(server)
                except (LeaseLost, TaskCancelled):
                    raise
                except Exception as exc:  # noqa: BLE001 - never leave a task "running" behind an unexpected error
                    session.rollback()
                    log.exception("update task %s stopped unexpectedly", task.id)
                    self._failed(steps, f"the update stopped unexpectedly: {exc}")
                finally:
                    host.connection.close()
        if task.rollout_id:
            self.advance_rollout(task.rollout_id)

    def diagnose(self, task):
        steps = StepLog(self.store, task, self.holder, self.lease.held, progress_event=None,
                        finished_event=self.finished_event[diagnostics.KIND], cancel_point=self.cancel_point)
        diagnostics.Diagnose(steps, lambda: self.hosts.connect(task.server_id),
                             lambda: diagnostics.heartbeat_check(self.monitoring, task.server_id)).run()

    @staticmethod
    def _failed(steps, error):
        steps.finished("failed", error)

    def advance_rollout(self, rollout_id):
        """Move a rollout on as far as it goes now (rollouts.Rollouts.advance); its new tasks start at once."""
        with self.Session() as session:
            started = Rollouts(session, self.store).advance(rollout_id)
            session.commit()
        if started:
            self.container.spawn_managed_thread(self.poll)
        return started

    def get_dependency(self, worker_ctx):
        return Updates(self)

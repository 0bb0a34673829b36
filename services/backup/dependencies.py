"""The backup service's nameko dependency: shared/'s task runner, running backup, verify, restore and
prune tasks (pg_dump and restic are subprocesses: hours of I/O never block an RPC), and the
schedules that queue them."""
import contextlib
import logging

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from services.backup.backup_servers import BackupServers
from services.backup.backups import Backups, Progress, failure_reason
from services.backup.keys import KeyRing
from services.backup.models import Lease, Schedule, Task, TaskStep
from services.backup.schedules import next_run
from shared.crypto import BACKUP_PASSWORD, SecretBox
from shared.errors import OperationInProgress
from shared.leases import LeaseLost
from shared.task_runner import TaskCancelled, TaskRunner, TaskWorkers
from shared.tasks import utcnow

log = logging.getLogger("backup")
KINDS = ("backup", "verify", "restore", "prune")
# The steps each kind reports, in order ("step k of N" is known when it is queued).
STEPS = {"backup": 4, "verify": 3, "restore": 1, "prune": 2}
LIVE_RESTORE_STEPS = 3  # restore, migrate, swap
# Each kind's event at its end: (when it succeeded, when it failed or was cancelled). One per task, always.
EVENTS = {"backup": ("backup_finished", "backup_failed"), "verify": ("backup_verified",) * 2,
          "restore": ("backup_restored",) * 2, "prune": ("backup_pruned",) * 2}


class TaskProgress(Progress):
    """``step(name)`` records one step of a task: started, then succeeded with what it said, or failed.
    A step does not start once ``may_act()`` says the replica's lease on its tasks lapsed, nor once someone
    asked to cancel the task (``cancel_point``, between steps); a ``cancellable()`` stretch stops where it is.
    ``finish`` ends the task with what its run made, its last step and its event in one transaction."""

    def __init__(self, store, task_id, holder=None, may_act=lambda: True, cancel_point=lambda task_id: None,
                 cancellable=lambda task_id: contextlib.nullcontext()):
        super().__init__()
        self.store = store
        self.task_id = task_id
        self.holder = holder
        self.may_act = may_act
        self._cancel_point = cancel_point  # TaskRunner.cancel_point
        self._cancellable = cancellable  # TaskRunner.cancellable
        self.position = 0

    def _begin(self, name):
        if not self.may_act():
            raise LeaseLost(f"not starting step {name}: the lease on this task lapsed")
        self.position += 1
        self.names.append(name)
        self.store.step_started(self.task_id, self.position, name)
        return self.position

    @contextlib.contextmanager
    def step(self, name):
        self._cancel_point(self.task_id)
        position, lines = self._begin(name), []
        try:
            yield lines.append
        except Exception as exc:
            lines.append(f"failed: {exc}")
            self.store.step_finished(self.task_id, position, "failed", "\n".join(lines))
            raise
        self.store.step_finished(self.task_id, position, "succeeded", "\n".join(lines))

    def cancellable(self):
        return self._cancellable(self.task_id)

    def across(self, swap):
        """The restored database never held this task: its row and steps (the running one included), read before
        ``swap()``, are written into the database swapped in, so the task ends there, with its one event."""
        with self.store.Session() as session:
            task = session.execute(select(Task.__table__).where(Task.id == self.task_id)).mappings().one()
            steps = session.execute(select(TaskStep.__table__).where(TaskStep.task_id == self.task_id)).mappings().all()
        swapped = swap()
        with self.store.Session() as session:  # pre-ping: the pool's connections died with the old database
            session.execute(insert(Task.__table__).values(dict(task)).on_conflict_do_nothing())
            session.execute(insert(TaskStep.__table__).values([dict(s) for s in steps]).on_conflict_do_nothing())
            session.commit()
        return swapped

    def finish(self, outcome, events):
        """End the task succeeded: what ``outcome`` writes (under a last step, "record", which ends in the same
        transaction), the task's end and ``events`` commit together or not at all. Not a cancel point: what
        the run stored is kept. True if this call ended the task (not another replica, its lease lapsed)."""
        position = self._begin("record") if outcome.write is not None else None

        def work(session):
            if position is not None:
                outcome.write(session)
                self.store.end_step(session, self.task_id, position, "succeeded", outcome.said)

        return self.store.finish(self.task_id, "succeeded", holder=self.holder, events=events, work=work)


class Backing(TaskWorkers):
    """What the service's entrypoints use: the catalogue, the servers, the key, the tasks, ``kick``."""

    def __init__(self, runner):
        super().__init__(runner)
        self.servers = runner.servers
        self.backups = runner.backups
        self.keyring = runner.keyring
        self.Session = runner.Session
        self.fire_schedules = runner.fire_schedules
        self.refresh_servers = runner.refresh_servers

    def queue(self, kind, backup_server, params, requested_by, session=None):
        """A queued task of ``kind`` on the backup server; with ``session`` it joins that transaction (the caller
        commits, then kicks)."""
        steps = LIVE_RESTORE_STEPS if params.get("live") else STEPS[kind]
        task = self.store.create(kind, backup_server["server_id"], backup_server["name"], params, requested_by, steps,
                                 session=session)
        if session is None:
            self.kick()
        return task


def ended_events(task, params, state, error, found=None):
    """The one event that says how a task of the backup service (dict) ended, whatever ended it: its run, a cancel,
    or a replica reaping it from a dead one (shared/tasks.py: ``ended_events``). The backup server and backup
    come from its ``params``, what the run made or found from ``found``."""
    kind = task["kind"]
    name = EVENTS[kind][0 if state == "succeeded" else 1]
    payload = {"backup_server_id": params.get("backup_server_id"), "backup_server_name": task["server_name"],
               "task_id": task["id"], "state": state, "error": error}
    if kind == "prune":
        payload.update(removed=[], kept=None)
    else:  # a backup run that made none names its task there, as backup_failed always has
        payload["backup_id"] = params.get("backup_id", task["id"])
    if kind == "restore":
        payload.update(into=params["into"], live=params.get("live", False))
    return [(name, dict(payload, **(found or {})))]


class BackupRunner(TaskRunner):
    task_model, step_model, lease_model = Task, TaskStep, Lease
    kinds = KINDS
    section = "backup"
    # The backup kinds' events are their own (EVENTS), written with each task's end however it ended.
    finished_event = staticmethod(ended_events)
    default_slots, default_pool_size = 4, 5

    def setup(self):
        super().setup()
        config = self.container.config
        box = SecretBox(config["SECRET_KEY"])
        inventory = self.rpc.client().service("inventory")
        self.servers = BackupServers(self.Session, box, config["SECRET_KEY"], utcnow,
                                     cache_dir=self.options.get("restic_cache_dir"), outbox=self._outbox)
        self.keyring = KeyRing(self.Session, box, lambda: box.open_sealed(BACKUP_PASSWORD, inventory.backup_password()),
                               utcnow)
        self.backups = Backups(self.Session, self.servers, self.keyring, config["DATABASE_URL"], None, utcnow)

    def run(self, task_id):
        task, _ = self.store.get(task_id)
        params = self.store.params(task_id)
        progress = TaskProgress(self.store, task_id, self.holder, self.lease.held, self.cancel_point, self.cancellable)
        try:
            if task["kind"] == "backup":
                outcome = self.backups.back_up(params["backup_server_id"], progress, task_id=task_id)
            elif task["kind"] == "verify":
                outcome = self.backups.verification(params["backup_id"], progress)
            elif task["kind"] == "restore" and params.get("live"):
                outcome = self.backups.restore_live(params["backup_id"], progress)
            elif task["kind"] == "restore":
                outcome = self.backups.restore(params["backup_id"], params["into"], progress)
            else:
                outcome = self.backups.pruned(params["backup_server_id"], progress)
        except (LeaseLost, TaskCancelled):
            raise  # the runner ends the task (or another replica did)
        except Exception as exc:  # noqa: BLE001 - every failure ends the task with its reason
            log.warning("%s task %s failed: %s", task["kind"], task_id, exc, extra={"task_id": task_id})
            self.store.finish(task_id, "failed", str(exc)[:2000], holder=self.holder,
                              events=ended_events(task, params, "failed", failure_reason(exc)))
            return
        progress.finish(outcome, ended_events(task, params, "succeeded", None, outcome.found))

    def fire_schedules(self, now=None):
        """Queue the task of every due schedule, once: the schedule's row lock and its next time
        move in the task's own transaction, so two replicas never fire the same firing."""
        now = now or utcnow()
        fired = 0
        with self.Session() as session:
            due = session.scalars(select(Schedule).where(Schedule.enabled, Schedule.next_run_at <= now)
                                  .with_for_update(skip_locked=True)).all()
            for schedule in due:
                server = self.servers.describe(session, self.servers.load(session, schedule.backup_server_id))
                params = {"backup_server_id": server["id"], "schedule_id": schedule.id}
                if schedule.kind == "verify":
                    latest = self.backups.latest(server["id"])
                    if latest is None:
                        schedule.next_run_at = next_run(schedule.cron, now)
                        continue
                    params["backup_id"] = latest
                schedule.next_run_at = next_run(schedule.cron, now)
                try:
                    with session.begin_nested():
                        task = self.store.create(schedule.kind, server["server_id"], server["name"], params,
                                                 "schedule", STEPS[schedule.kind], session=session)
                except OperationInProgress as exc:  # the server is busy: this firing is skipped, said in the log
                    log.warning("schedule %s skipped a firing: %s", schedule.id, exc)
                    continue
                schedule.last_run_at, schedule.last_task_id = now, task.id
                fired += 1
            session.commit()
        if fired:
            self.poll()
        return fired

    def refresh_servers(self):
        for server in self.servers.list():
            try:
                self.servers.refresh(server["id"])
            except Exception as exc:  # recorded on the row as last_error
                log.info("backup server %s does not answer: %s", server["name"], exc)

    def get_dependency(self, worker_ctx):
        return Backing(self)

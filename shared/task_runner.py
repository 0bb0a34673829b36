"""The task runner every task-running service subclasses: claims under a replica's lease, runs
tasks in green threads outside workers, and ends each once (shared/tasks.py, shared/leases.py)."""
import contextlib
import logging
import socket
import uuid

import eventlet
from nameko.extensions import DependencyProvider
from sqlalchemy.orm import sessionmaker

from shared import green
from shared.db import make_engine
from shared.authz import is_admin, may_change, require_role
from shared.dependencies import Events, RpcClients, rpc
from shared.leases import Lease, LeaseLost
from shared.schemas import load_or_raise
from shared.schemas import tasks as task_schemas
from shared.errors import PermissionDenied, ServerNotFound, TaskNotCancellable
from shared.tasks import TaskStore, ended_events

log = logging.getLogger("steward.tasks")
# How a service reads inventory on a task's behalf (who may cancel it).
TASKS_PRINCIPAL = {"name": "tasks", "role": "viewer", "scope": "service", "user_id": None}


class TaskCancelled(Exception):
    """Raised at a task's safe point between steps once someone asked to cancel it; its runner ends it ``cancelled``."""


class TaskWorkers:
    """What a service's entrypoints get of its TaskRunner: the task store, and ``kick``."""

    def __init__(self, runner):
        self._runner = runner
        self.store = runner.store

    def poll(self):
        """Fail the tasks of replicas whose lease expired, then claim and start queued tasks."""
        self._runner.reap()
        self._runner.poll()

    def reap(self):
        self._runner.reap()

    def gone_holders(self):
        """Replicas whose lease expired and that left tasks running (``reap`` fails those tasks)."""
        return self._runner.gone_holders()

    def kick(self):
        """Claim and start queued tasks now rather than at the next poll."""
        self._runner.container.spawn_managed_thread(self._runner.poll)

    def cancel(self, task_id, requested_by):
        """Cancel a queued task at once, or ask its runner to stop a running one (TaskStore.cancel)."""
        return self.store.cancel(task_id, requested_by, self._runner.finished_event)


class TaskRunner(DependencyProvider):
    """Runs a service's tasks (shared/tasks.py) in green threads outside its workers, so long
    operations never block its RPCs.

    Each replica holds a lease ``replica:<holder>`` (shared/leases.py) while it lives and
    claims queued tasks as that holder; it renews the lease every third of its time and
    checks it before claiming. A replica whose lease lapsed (a long database outage) kills
    the tasks it ran and fails them, before any other replica may; a replica finding tasks
    whose holder's lease expired (it crashed) fails them. Either way ``store.finish`` and
    ``fail_*`` end a task once, and only the call that ended it emits ``finished_event``.

    A subclass names ``task_model``, ``step_model``, ``lease_model``, the ``kinds`` it runs,
    ``finished_event`` (one name, {kind: name}, or a function: shared/tasks.py ``ended_events``), its
    configuration ``section`` and ``run(task_id)``; the service has an ``Events`` dependency (its outbox),
    through which the runner emits.

    A kind stops on request at the points where stopping leaves the server as it was (between checks,
    before the next component): there it calls ``cancel_point(task_id)``, and the runner ends the task
    ``cancelled`` with its ``*_finished`` event. Work that may be cut short anywhere (a child process
    streaming a dump: killing it loses nothing that was kept) runs ``with cancellable(task_id)``.
    """

    LEASE_PREFIX = "replica:"
    task_model = step_model = lease_model = None
    kinds = ()
    finished_event = None
    section = None
    slots_option = "max_parallel_tasks"
    default_slots, default_pool_size = 32, 10  # when the configuration section does not say
    rpc = RpcClients()  # for work outside workers: ``self.rpc.client().service(name)``
    # How long a task's call waits for a service with no running replica (a stack restarting) before the
    # task fails: a task is background work, and failing an install at its last step for that is worse.
    patience_seconds = 120

    def task_client(self, name):
        """The RPC client tasks reach a service through: patient (see ``patience_seconds``)."""
        return self.rpc.client().service(name).patient(self.patience_seconds)

    def setup(self):
        green.cooperate()
        config = self.container.config
        self.options = config.get(self.section) or {}
        self.holder = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.engine = make_engine(config["DATABASE_URL"], pool_size=int(self.options.get("pool_size", self.default_pool_size)))
        self.Session = sessionmaker(bind=self.engine, expire_on_commit=False)
        self.store = TaskStore(self.Session, self.task_model, self.step_model, outbox=self._outbox)
        self.lease = Lease(self.Session, self.lease_model, self.LEASE_PREFIX + self.holder, self.holder,
                           float(self.options.get("lease_seconds", 30)))
        self.pool = eventlet.GreenPool(int(self.options.get(self.slots_option, self.default_slots)))
        self.running = {}  # task id -> the green thread running it
        self.owed = False  # tasks were stopped with the lease lost: fail them once the database answers
        self.keeper = None

    def _events(self):
        return next(d for d in self.container.dependencies if isinstance(d, Events))

    def _outbox(self, session):
        return self._events().emitter_for(session)

    def emit(self, name, **payload):
        """An event of the service (its ``Events`` dependency: the outbox), in a transaction of its own. A method,
        not a property: nameko reads a dependency's properties while it binds them, before ``Events`` may be."""
        return self._events().emitter().emit(name, **payload)

    def start(self):
        self.lease.keep()
        self.reap()
        self.keeper = self.container.spawn_managed_thread(self._keep_lease)

    def _keep_lease(self):
        interval = self.lease.ttl / 3
        while True:
            eventlet.sleep(interval)
            with eventlet.Timeout(interval, False):  # a hung connection must not outlast the lease
                self.lease.keep()
            if not self.lease.held():
                self._stop_tasks()  # before the lease expires for others
                self.owed = True
            elif self.owed:
                self._interrupted(f"the {self.container.service_name} replica running it lost its lease")
                self.owed = False

    def _stop_tasks(self):
        for thread in list(self.running.values()):
            thread.kill()
        self.running.clear()

    def _interrupted(self, reason):
        try:
            self._logged(self.store.fail_interrupted(self.holder, reason, self.finished_event))
        except Exception:  # noqa: BLE001 - the database is away: the tasks are failed by whoever sees it first
            log.warning("could not fail the tasks of %s (%s); another replica will", self.holder, reason, exc_info=True)

    def stop(self):
        self._shut("stopped")

    def kill(self):
        self._shut("killed")

    def _shut(self, how):
        if self.keeper is not None:
            self.keeper.kill()  # before the release: a renewal after it would take the lease again
        self._stop_tasks()
        self._interrupted(f"the {self.container.service_name} replica running it was {how}")
        self.lease.release()
        self.engine.dispose()

    def gone_holders(self):
        return sorted(self.store.unleased_holders(self.lease_model, self.LEASE_PREFIX) - {self.holder})

    def reap(self):
        """Fail the running tasks of replicas whose lease expired (crashed, or stopped without saying)."""
        self._logged(self.store.fail_unleased(
            self.lease_model, self.LEASE_PREFIX,
            f"interrupted: the {self.container.service_name} replica running it stopped", self.finished_event))

    @staticmethod
    def _logged(tasks):
        for task in tasks:
            log.warning("task %s was interrupted: %s", task["id"], task["error"], extra={"task_id": task["id"]})

    def poll(self):
        if not self.lease.held():
            return  # a replica that may have lost its lease takes no new work
        for task_id in self.store.claim(self.holder, self.pool.free(), self.kinds):
            thread = self.pool.spawn(self._run, task_id)
            self.running[task_id] = thread
            thread.link(lambda gt, task_id=task_id: self.running.pop(task_id, None))

    def cancel_point(self, task_id):
        """A safe point between a task's steps: TaskCancelled if someone asked to cancel it."""
        by = self.store.cancel_requested(task_id)
        if by is not None:
            raise TaskCancelled(f"cancelled by {by}")

    @contextlib.contextmanager
    def cancellable(self, task_id, poll_seconds=1.0):
        """A stretch of a task that a cancel cuts short where it is: a watcher asks every ``poll_seconds`` and
        throws TaskCancelled into the task's green thread, as a stop throws GreenletExit, so whatever the
        stretch runs unwinds (``subprocess.run`` and ``Popen`` users kill their child processes on the way)."""
        self.cancel_point(task_id)
        task, inside = eventlet.getcurrent(), [True]

        def watch():
            while True:
                eventlet.sleep(poll_seconds)
                by = self.store.cancel_requested(task_id)
                if by is not None and inside[0]:  # checked and thrown with no switch between: it lands inside
                    eventlet.kill(task, TaskCancelled(f"cancelled by {by}"))
                    return

        watcher = eventlet.spawn(watch)
        try:
            yield
        finally:
            inside[0] = False
            watcher.kill()

    def _run(self, task_id):
        try:
            self.run(task_id)
        except LeaseLost:
            log.warning("task %s stopped: this replica lost its lease", task_id, extra={"task_id": task_id})
        except TaskCancelled as exc:
            task, steps = self.store.get(task_id)
            done = sum(1 for step in steps if step["state"] != "running")
            self._end(task, "cancelled", f"{exc} after {done} of {task['step_count']} steps")
        except Exception:  # a bug must fail the task, not leave it running
            log.exception("task %s crashed", task_id)
            self._end(self.store.get(task_id)[0], "failed", "internal error; see the service's log")

    def _end(self, task, state, error):
        """End a task the kind did not end itself, with its ``*_finished`` event."""
        events = ended_events(self.finished_event, task, self.store.params(task["id"]), state, error)
        self.store.finish(task["id"], state, error, holder=self.holder, events=events)

    def run(self, task_id):
        raise NotImplementedError

    def get_dependency(self, worker_ctx):
        return TaskWorkers(self)


class TaskQueries:
    """The calls every task-running service answers (the gateway's ``/tasks`` routes merge them): a
    service class inherits them and says in ``task_workers()`` its TaskRunner's dependency (its store, and
    cancelling), or only in ``task_store()`` which ``TaskStore`` holds its tasks (they cannot be cancelled).

    Cancelling is for admins, and, where ``server_users_may_cancel``, for the task's server's server user
    (who may start it may stop it); the service then has ``inventory`` (an RpcProxy)."""

    server_users_may_cancel = False

    def task_store(self):
        return self.task_workers().store

    def task_workers(self):
        return None

    @rpc
    def cancel_task(self, principal, task_id):
        require_role(principal, "viewer")
        task, _ = self.task_store().get(task_id)
        if not is_admin(principal):
            try:
                server = self.inventory.get_server(TASKS_PRINCIPAL, task["server_id"]) \
                    if self.server_users_may_cancel else None
            except ServerNotFound:
                server = None
            if server is None or not may_change(principal, server):
                raise PermissionDenied(f"only an admin{' or the server user' if server else ''} may cancel "
                                       f"{task['kind']} task {task_id}")
        workers = self.task_workers()
        if workers is None:
            raise TaskNotCancellable(f"{task['kind']} tasks cannot be cancelled", {"state": [task["state"]]})
        return task_schemas.Task().dump(workers.cancel(task_id, principal.get("name")))

    @rpc
    def list_tasks(self, principal, query):
        """The newest tasks matching the query, enough for its page (the gateway merges every service's)."""
        require_role(principal, "viewer")
        items, total = self.task_store().page(load_or_raise(task_schemas.TaskQuery(), query, "query"))
        return {"items": task_schemas.Task(many=True).dump(items), "total": total}

    @rpc
    def get_task(self, principal, task_id):
        require_role(principal, "viewer")
        task, _ = self.task_store().get(task_id)
        return task_schemas.Task().dump(task)

    @rpc
    def task_log(self, principal, task_id):
        require_role(principal, "viewer")
        task, steps = self.task_store().get(task_id)
        return task_schemas.TaskLog().dump({"task_id": task["id"], "state": task["state"], "steps": steps})

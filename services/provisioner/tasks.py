"""Install tasks and their step log. Each change commits at once, so the API and other
replicas see progress as it happens; claiming takes row locks with SKIP LOCKED, so two
replicas never run the same task."""
import uuid
from datetime import datetime, timezone

from sqlalchemy import select, text, update

from services.provisioner.models import Task, TaskStep
from shared.errors import TaskNotFound


def utcnow():
    return datetime.now(timezone.utc)


def task_dict(task):
    return {c: getattr(task, c) for c in (
        "id", "kind", "server_id", "server_name", "state", "step_index", "step_count", "current_step", "error",
        "requested_by", "created_at", "started_at", "finished_at")}


def step_dict(step):
    return {c: getattr(step, c) for c in ("position", "name", "state", "started_at", "finished_at", "duration_ms", "output")}


class TaskStore:
    def __init__(self, session_factory, clock=utcnow):
        self.Session = session_factory
        self.clock = clock

    def create(self, kind, server_id, server_name, params, requested_by, step_count):
        with self.Session() as session:
            task = Task(id=uuid.uuid4().hex, kind=kind, server_id=server_id, server_name=server_name, state="queued",
                        step_index=0, step_count=step_count, params=params, requested_by=requested_by,
                        created_at=self.clock())
            session.add(task)
            session.commit()
            return task_dict(task)

    def get(self, task_id):
        with self.Session() as session:
            task = session.get(Task, task_id)
            if task is None:
                raise TaskNotFound(f"no task with id {task_id}")
            return task_dict(task), [step_dict(s) for s in task.steps]

    def params(self, task_id):
        with self.Session() as session:
            return session.get(Task, task_id).params

    def claim(self, replica, limit, kinds=("install",)):
        """Mark up to ``limit`` queued tasks of ``kinds`` running for ``replica``; returns their ids."""
        if limit <= 0:
            return []
        with self.Session() as session:
            chosen = (
                select(Task.id).where(Task.state == "queued", Task.kind.in_(kinds)).order_by(Task.created_at)
                .limit(limit).with_for_update(skip_locked=True).scalar_subquery()
            )
            ids = session.scalars(
                update(Task).where(Task.id.in_(chosen))
                .values(state="running", claimed_by=replica, started_at=self.clock())
                .returning(Task.id)
            ).all()
            session.commit()
            return list(ids)

    def step_started(self, task_id, position, name):
        with self.Session() as session:
            session.add(TaskStep(task_id=task_id, position=position, name=name, state="running", started_at=self.clock()))
            session.execute(update(Task).where(Task.id == task_id).values(step_index=position, current_step=name))
            session.commit()

    def step_finished(self, task_id, position, state, output):
        with self.Session() as session:
            step = session.get(TaskStep, (task_id, position))
            step.state, step.output, step.finished_at = state, output, self.clock()
            step.duration_ms = int((step.finished_at - step.started_at).total_seconds() * 1000)
            session.commit()
            return step.duration_ms

    def finish(self, task_id, state, error=None):
        with self.Session() as session:
            now = self.clock()
            session.execute(update(Task).where(Task.id == task_id).values(state=state, error=error, finished_at=now))
            # A step cut short (the task crashed) is not left "running" in the log.
            session.execute(update(TaskStep).where(TaskStep.task_id == task_id, TaskStep.state == "running")
                            .values(state="failed", finished_at=now, output=error or ""))
            session.commit()

    def replicas_running_tasks(self):
        with self.Session() as session:
            return set(session.scalars(select(Task.claimed_by).where(Task.state == "running").distinct()))

    def fail_interrupted(self, replica, reason):
        """Fail every task ``replica`` was running (it stopped): never silently stuck ``running``."""
        with self.Session() as session:
            tasks = session.scalars(select(Task).where(Task.state == "running", Task.claimed_by == replica)
                                    .with_for_update(skip_locked=True)).all()
            for task in tasks:
                for step in task.steps:
                    if step.state == "running":
                        step.state, step.finished_at = "failed", self.clock()
                        step.output = (step.output + "\n" if step.output else "") + reason
                task.state, task.error, task.finished_at = "failed", reason, self.clock()
            session.commit()
            return [task_dict(t) for t in tasks]


class ReplicaLiveness:
    """A replica holds a session-level advisory lock on its id while it lives; if another
    replica can take that lock, the owner is gone and its running tasks were interrupted."""

    def __init__(self, engine, replica):
        self.engine = engine
        self.replica = replica
        self.connection = None

    @staticmethod
    def _key(replica):
        return f"steward-provisioner-replica:{replica}"

    def hold(self):
        self.connection = self.engine.connect()
        self.connection.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": self._key(self.replica)})
        self.connection.commit()

    def release(self):
        if self.connection is not None:
            self.connection.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": self._key(self.replica)})
            self.connection.close()
            self.connection = None

    def is_gone(self, replica):
        if replica == self.replica:
            return False
        with self.engine.connect() as connection:
            got = connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": self._key(replica)}).scalar()
            if got:
                connection.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": self._key(replica)})
            connection.commit()
            return bool(got)

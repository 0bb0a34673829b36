"""One task model for every long operation (install, update, backup, ...): the table shape,
claiming, steps, the log and the end, for any service that runs tasks.

Each service keeps its tasks in its own schema: its models declare

    class Task(TaskColumns, Base): ...          # table "tasks", plus the kind's own columns
    class TaskStep(TaskStepColumns, Base): ...  # table "task_steps"

and its code reaches them through a ``TaskStore(Session, Task, TaskStep)``. Every change
commits at once, so the API and other replicas see progress as it happens. A replica
claims queued tasks with ``FOR UPDATE SKIP LOCKED`` (two replicas never take the same one)
and puts its lease's holder in ``claimed_by``; a task ends with one conditional UPDATE
(``finish``), so of a replica finishing it and another failing it after the first lost
its lease, exactly one ends it, and only that one says so (one ``*_finished`` event).
"""
import uuid
from datetime import datetime, timezone

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from shared.db import once_more_if_dropped
from shared.errors import OperationInProgress, TaskFinished, TaskNotCancellable, TaskNotFound

TASK_STATES = ("queued", "running", "succeeded", "failed", "rolled_back", "cancelled")
FINISHED = ("succeeded", "failed", "rolled_back", "cancelled")
MAX_OUTPUT = 64 * 1024  # characters of a step's output kept (its end: where errors are)

TASK_FIELDS = ("id", "kind", "server_id", "server_name", "state", "step_index", "step_count", "current_step",
               "error", "requested_by", "created_at", "started_at", "finished_at")
CANCEL_FIELDS = ("cancel_requested_at", "cancel_requested_by")
STEP_FIELDS = ("position", "name", "state", "started_at", "finished_at", "duration_ms", "output")


def utcnow():
    return datetime.now(timezone.utc)


class TaskColumns:
    """A long operation on one server: an id, a kind, a state and progress as step k of N."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # install, update, ...
    server_id: Mapped[int] = mapped_column(Integer, index=True)
    server_name: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # TASK_STATES
    step_index: Mapped[int] = mapped_column(Integer, server_default="0")
    step_count: Mapped[int] = mapped_column(Integer, server_default="0")
    current_step: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    # What the task needs to run, fixed when it was queued (read with the requester's rights).
    params: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    requested_by: Mapped[str | None] = mapped_column(String(64))
    # The lease holder (a replica) running it: while its lease lives, no one else touches the task.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @declared_attr
    def steps(cls) -> Mapped[list["TaskStep"]]:  # noqa: F821 - each service names its own TaskStep
        return relationship("TaskStep", lazy="selectin", cascade="all, delete-orphan", order_by="TaskStep.position")

    @declared_attr.directive
    def __table_args__(cls):
        # Replicas look for queued work often: a partial index keeps that cheap as tasks pile up.
        return (Index("ix_tasks_queued", "created_at", postgresql_where=text("state IN ('queued', 'running')")),)


class CancelColumns:
    """A running task someone asked to cancel: its runner stops at its next safe point between steps
    (shared/task_runner.py: ``TaskRunner.cancel_point``). A service's Task takes these beside TaskColumns;
    without them only a queued task can be cancelled."""

    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested_by: Mapped[str | None] = mapped_column(String(64))


def add_cancel_columns(op, schema):
    """A service's migration that opts its tasks into CancelColumns (``op``: alembic's)."""
    import sqlalchemy as sa

    op.add_column("tasks", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True), schema=schema)
    op.add_column("tasks", sa.Column("cancel_requested_by", sa.String(length=64), nullable=True), schema=schema)


def drop_cancel_columns(op, schema):
    op.drop_column("tasks", "cancel_requested_by", schema=schema)
    op.drop_column("tasks", "cancel_requested_at", schema=schema)


class TaskStepColumns:
    """One step of a task's log: its place, name, state, times and output."""

    __tablename__ = "task_steps"

    @declared_attr
    def task_id(cls) -> Mapped[str]:
        return mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)

    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based: step k of N
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # running, succeeded, failed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    output: Mapped[str] = mapped_column(Text, server_default="")


def task_dict(task):
    return dict({name: getattr(task, name) for name in TASK_FIELDS},
                **{name: getattr(task, name, None) for name in CANCEL_FIELDS})


def event_for(finished_event, kind):
    """A kind's ``*_finished`` event: ``finished_event`` names one for every kind, or maps kinds to theirs."""
    if isinstance(finished_event, dict):
        return finished_event.get(kind)
    return finished_event


def ended_events(finished_event, task, params, state, error):
    """[(name, payload)] saying that ``task`` (dict) ended ``state``: ``finished_event`` names one ``*_finished``
    for every kind or maps kinds to theirs (``event_for``), or is a function ``(task, params, state, error)`` for
    kinds whose events carry more than the task (what its ``params`` name: a backup server, a backup)."""
    if callable(finished_event):
        return list(finished_event(task, params, state, error))
    name = event_for(finished_event, task["kind"])
    return [(name, TaskStore.finished_fields(task, state, error))] if name else []


def step_dict(step):
    return {name: getattr(step, name) for name in STEP_FIELDS}


def log_text(task, steps):
    """A task's step log as text, for download: one block per step with its times and output."""
    lines = [f"{task['kind']} task {task['id']} on {task['server_name']} (server {task['server_id']}): {task['state']}"]
    if task["error"]:
        lines.append(f"error: {task['error']}")
    for step in steps:
        ended = step["finished_at"].isoformat() if step["finished_at"] else "-"
        lines.append(f"\n== {step['name']}: {step['state']} ({step['started_at'].isoformat()} .. {ended})")
        if step["output"]:
            lines.append(step["output"].rstrip())
    return "\n".join(lines) + "\n"


class TaskStore:
    """A service's tasks: ``Session`` a sessionmaker, ``Task``/``TaskStep`` its models (built on the mixins above)."""

    def __init__(self, session_factory, task_model, step_model, clock=utcnow, outbox=None):
        self.Session = session_factory
        self.Task = task_model
        self.TaskStep = step_model
        self.clock = clock
        # outbox(session) -> an EventEmitter writing into that session's transaction (the service's outbox):
        # the ``events`` [(name, payload)] a write is given commit with it, or not at all.
        self.outbox = outbox

    def _emit(self, session, events):
        if events:
            emitter = self.outbox(session)
            for name, payload in events:
                emitter.emit(name, **payload)

    @staticmethod
    def finished_fields(task, state, error):
        """The payload of a kind's ``*_finished`` event for a task (dict) that ended."""
        return {"server_id": task["server_id"], "server_name": task["server_name"], "task_id": task["id"],
                "state": state, "error": error}

    def create(self, kind, server_id, server_name, params, requested_by, step_count=0, session=None, overlaps=None,
               **columns):
        """A queued task; OperationInProgress while another task of the server that ``overlaps`` it (an SQL
        condition on the task model; default: any) is queued or running. The check and the insert hold a
        transaction lock on the server, so two replicas cannot both see it idle. With ``session`` the task
        joins that transaction (the caller commits); else it is committed at once."""
        if session is None:
            with self.Session() as own:
                task = self.create(kind, server_id, server_name, params, requested_by, step_count, own, overlaps,
                                   **columns)
                own.commit()
                return task_dict(task)
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                        {"key": f"steward-tasks:{self.Task.__table__.fullname}:{server_id}"})
        busy = self.active(session, server_id, overlaps)
        if busy is not None:
            raise OperationInProgress(
                f"{busy.kind} task {busy.id} ({busy.state}) is already at work on {server_name}; one operation at "
                f"a time: wait for it to finish (GET /api/v2/tasks/{busy.id})", {"task_id": [busy.id]})
        task = self.Task(id=uuid.uuid4().hex, kind=kind, server_id=server_id, server_name=server_name, state="queued",
                         step_index=0, step_count=step_count, params=params, requested_by=requested_by,
                         created_at=self.clock(), **columns)
        session.add(task)
        session.flush()
        return task

    def active(self, session, server_id, overlaps=None):
        """The oldest queued or running task of the server that ``overlaps`` (default: any), or None."""
        condition = [self.Task.server_id == server_id, self.Task.state.in_(("queued", "running"))]
        if overlaps is not None:
            condition.append(overlaps)
        return session.scalars(select(self.Task).where(*condition).order_by(self.Task.created_at).limit(1)).first()

    def load(self, session, task_id):
        task = session.get(self.Task, task_id)
        if task is None:
            raise TaskNotFound(f"no task with id {task_id}")
        return task

    def get(self, task_id):
        """(task, [step, ...]) as dicts."""
        with self.Session() as session:
            task = self.load(session, task_id)
            return task_dict(task), [step_dict(s) for s in task.steps]

    def cancel(self, task_id, requested_by, finished_event=None):
        """Cancel a task: a queued one ends ``cancelled`` at once (with its ``*_finished`` event, see ``ended_events``);
        a running one is marked and its runner stops at its next safe point between steps; the task (dict).
        TaskFinished when it has already ended; TaskNotCancellable when it runs and its kind's table cannot say so."""
        Task = self.Task
        with self.Session() as session:
            # The row lock: a replica claiming it skips it, one finishing it waits and finds it ended.
            task = session.get(Task, task_id, with_for_update=True)
            if task is None:
                raise TaskNotFound(f"no task with id {task_id}")
            if task.state in FINISHED:
                raise TaskFinished(f"{task.kind} task {task_id} has already ended ({task.state}); only a queued or "
                                   "running task can be cancelled", {"state": [task.state]})
            if task.state == "queued":
                task.state, task.finished_at = "cancelled", self.clock()
                task.error = f"cancelled by {requested_by} before it started"
                self._emit(session, ended_events(finished_event, task_dict(task), task.params, "cancelled", task.error))
            elif not hasattr(Task, "cancel_requested_at"):
                raise TaskNotCancellable(f"{task.kind} task {task_id} is running and cannot be stopped half way; "
                                         "wait for it to end", {"state": [task.state]})
            elif task.cancel_requested_at is None:
                task.cancel_requested_at, task.cancel_requested_by = self.clock(), requested_by
            session.commit()
            return task_dict(task)

    def cancel_requested(self, task_id):
        """Who asked to cancel the running task, or None (always None for a table without CancelColumns)."""
        if not hasattr(self.Task, "cancel_requested_by"):
            return None
        with self.Session() as session:
            return session.scalar(select(self.Task.cancel_requested_by).where(self.Task.id == task_id,
                                                                          self.Task.cancel_requested_at.is_not(None)))

    def params(self, task_id):
        with self.Session() as session:
            return self.load(session, task_id).params

    def row(self, task_id):
        """The task's row with its steps (detached: read it; change it through the store)."""
        with self.Session() as session:
            return self.load(session, task_id)

    def _matching(self, query):
        conditions = []
        for name in ("server_id", "kind", "state"):
            if query.get(name) is not None:
                conditions.append(getattr(self.Task, name) == query[name])
        if query.get("since") is not None:
            conditions.append(self.Task.created_at >= query["since"])
        if query.get("until") is not None:
            conditions.append(self.Task.created_at < query["until"])
        return conditions

    def rows(self, query, limit):
        """The newest ``limit`` rows matching ``query`` (as ``page``), with their steps."""
        with self.Session() as session:
            return session.scalars(select(self.Task).where(*self._matching(query))
                                   .order_by(self.Task.created_at.desc(), self.Task.id.desc()).limit(limit)).all()

    def page(self, query):
        """The newest ``page * per_page`` tasks matching ``query`` (shared/schemas/tasks.py: TaskQuery, loaded),
        and how many match: enough for any service's page of every service's tasks merged."""
        with self.Session() as session:
            total = session.scalar(select(func.count()).select_from(self.Task).where(*self._matching(query)))
        return [task_dict(t) for t in self.rows(query, query["page"] * query["per_page"])], total

    def claim(self, holder, limit, kinds):
        """Mark up to ``limit`` queued tasks of ``kinds`` running for ``holder``; returns their ids, oldest first."""
        if limit <= 0:
            return []
        Task = self.Task
        with self.Session() as session:
            chosen = (
                select(Task.id).where(Task.state == "queued", Task.kind.in_(kinds)).order_by(Task.created_at)
                .limit(limit).with_for_update(skip_locked=True).scalar_subquery()
            )
            ids = session.scalars(
                update(Task).where(Task.id.in_(chosen))
                .values(state="running", claimed_by=holder, started_at=self.clock())
                .returning(Task.id)
            ).all()
            session.commit()
            return list(ids)

    def _retrying(self, work):
        """``work(session)`` in a fresh session, once more if the database dropped the connection under it
        (shared/db.py). Each write below may be repeated: the first attempt's transaction died with it."""
        def attempt():
            with self.Session() as session:
                return work(session)
        return once_more_if_dropped(attempt)

    def change(self, task_id, **columns):
        """Set columns of a task (its plan, what a kind records as it goes), committed at once."""
        def work(session):
            session.execute(update(self.Task).where(self.Task.id == task_id).values(**columns))
            session.commit()
        self._retrying(work)

    def step_started(self, task_id, position, name, events=()):
        def work(session):
            table = self.TaskStep.__table__
            session.execute(insert(table).values(task_id=task_id, position=position, name=name, state="running",
                                                 started_at=self.clock(), output="")
                            .on_conflict_do_nothing(index_elements=[table.c.task_id, table.c.position]))
            session.execute(update(self.Task).where(self.Task.id == task_id)
                            .values(step_index=position, current_step=name,
                                    step_count=func.greatest(self.Task.step_count, position)))
            self._emit(session, events)
            session.commit()
        self._retrying(work)

    def step_finished(self, task_id, position, state, output, events=()):
        """Ends a step; returns its duration in milliseconds."""
        def work(session):
            duration_ms = self.end_step(session, task_id, position, state, output)
            self._emit(session, events)
            session.commit()
            return duration_ms
        return self._retrying(work)

    def end_step(self, session, task_id, position, state, output):
        """Ends a step in ``session``'s transaction (the caller commits); returns its duration in milliseconds."""
        step = session.get(self.TaskStep, {"task_id": task_id, "position": position})
        step.state, step.output, step.finished_at = state, (output or "")[-MAX_OUTPUT:], self.clock()
        step.duration_ms = int((step.finished_at - step.started_at).total_seconds() * 1000)
        return step.duration_ms

    def finish(self, task_id, state, error=None, holder=None, events=(), work=None, **columns):
        """End a running task; True only for the one call that ended it, which alone writes ``events``
        (its ``*_finished``) and does ``work(session)`` (what the task made: a row, its last step's end) in the
        same transaction: a task ends once, says so once, and what it made stands exactly when it ended.

        With ``holder``, only while that holder still has it claimed: a replica whose task was
        failed by another (its lease expired) does not end it a second time."""
        Task = self.Task
        now = self.clock()
        condition = [Task.id == task_id, Task.state.in_(("queued", "running"))]
        if holder is not None:
            condition.append(Task.claimed_by == holder)

        def end(session):
            ended = session.execute(update(Task).where(*condition)
                                    .values(state=state, error=error, finished_at=now, **columns)
                                    .returning(Task.id)).scalar_one_or_none()
            if ended is not None and work is not None:
                work(session)
            # A step cut short (the task crashed, or another ended the task under it) is not left "running".
            session.execute(update(self.TaskStep).where(self.TaskStep.task_id == task_id,
                                                        self.TaskStep.state == "running")
                            .values(state="failed", finished_at=now,
                                    output=error or ("" if ended else "the task had already been ended")))
            if ended is not None:
                self._emit(session, events)
            session.commit()
            return ended is not None
        return self._retrying(end)

    def fail_interrupted(self, holder, reason, finished_event=None):
        """Fail every task ``holder`` was running (it stopped, or lost its lease); returns those this call ended,
        each with its ``finished_event`` in the same transaction."""
        return self._fail_running(self.Task.claimed_by == holder, reason, finished_event)

    def _unleased(self, lease_model, prefix):
        """Running tasks whose holder has no live lease named ``prefix + holder``."""
        alive = (select(lease_model.name)
                 .where(lease_model.name == literal(prefix) + self.Task.claimed_by, lease_model.expires_at > func.now())
                 .exists())
        return ~alive

    def unleased_holders(self, lease_model, prefix):
        """Holders that left tasks running without a live lease (crashed, or lost it)."""
        with self.Session() as session:
            return set(session.scalars(select(self.Task.claimed_by).distinct()
                                       .where(self.Task.state == "running", self._unleased(lease_model, prefix))))

    def fail_unleased(self, lease_model, prefix, reason, finished_event=None):
        """Fail the running tasks whose holder has no live lease named ``prefix + holder`` (it crashed, or lost
        its lease and so stopped); returns those this call ended."""
        return self._fail_running(self._unleased(lease_model, prefix), reason, finished_event)

    def _fail_running(self, condition, reason, finished_event):
        Task = self.Task
        with self.Session() as session:
            # Row locks: a holder's own finish() waits, then finds the task no longer running.
            tasks = session.scalars(select(Task).where(Task.state == "running", condition)
                                    .with_for_update(skip_locked=True)).all()
            now = self.clock()
            for task in tasks:
                for step in task.steps:
                    if step.state == "running":
                        step.state, step.finished_at = "failed", now
                        step.output = (step.output + "\n" if step.output else "") + reason
                task.state, task.error, task.finished_at = "failed", reason, now
            for task in tasks:
                self._emit(session, ended_events(finished_event, task_dict(task), task.params, "failed", reason))
            session.commit()
            return [task_dict(t) for t in tasks]

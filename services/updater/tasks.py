"""Update tasks: created queued, claimed once, a step log, progress events, one end.

A task is claimed with a conditional UPDATE, so two replicas never run the same
one; a ``running`` task is claimed again only when its work message comes back
from the broker, which happens only when the replica that held it is gone.
"""
import uuid
from datetime import datetime, timezone

from sqlalchemy import String, and_, func, or_, select, update

from services.updater.models import TaskStep, UpdateTask
from shared.errors import TaskNotFound

MAX_OUTPUT = 64 * 1024


def utcnow():
    return datetime.now(timezone.utc)


def task_dict(task):
    return {
        "id": task.id, "kind": "update", "server_id": task.server_id, "server_name": task.server_name,
        "component": task.component, "target_version": task.target_version, "state": task.state,
        "step_index": task.step_index, "step_count": task.step_count, "current_step": task.current_step,
        "error": task.error, "outcome": task.outcome or {}, "rollout_id": task.rollout_id,
        "requested_by": task.requested_by,
        "created_at": task.created_at, "started_at": task.started_at, "finished_at": task.finished_at,
        "steps": [
            {"name": s.name, "status": s.status, "started_at": s.started_at, "finished_at": s.finished_at,
             "output": s.output}
            for s in task.steps
        ],
    }


def task_log(task):
    """The downloadable step log: one block per step with its times and output."""
    lines = [f"update task {task.id} on {task.server_name} (server {task.server_id}): {task.state}"]
    if task.error:
        lines.append(f"error: {task.error}")
    for step in task.steps:
        ended = step.finished_at.isoformat() if step.finished_at else "-"
        lines.append(f"\n== {step.name}: {step.status} ({step.started_at.isoformat()} .. {ended})")
        if step.output:
            lines.append(step.output.rstrip())
    return "\n".join(lines) + "\n"


class Tasks:
    def __init__(self, session, clock=utcnow):
        self.session = session
        self.clock = clock

    def create(self, server, component, target_version, requested_by, rollout_id=None):
        task = UpdateTask(id=uuid.uuid4().hex, server_id=server["id"], server_name=server["name"], component=component,
                          target_version=target_version, state="queued", requested_by=requested_by,
                          rollout_id=rollout_id, outcome={})
        self.session.add(task)
        self.session.flush()
        return task

    def get(self, task_id):
        task = self.session.get(UpdateTask, task_id)
        if task is None:
            raise TaskNotFound(f"no update task {task_id}")
        return task

    def dispatch(self, task):
        """A fresh dispatch id for the task's next work message."""
        task.dispatch_id = uuid.uuid4().hex
        return {"task_id": task.id, "dispatch_id": task.dispatch_id}

    def redispatch_stale(self, older_than):
        """Queued tasks whose work message never came (lost between commit and publish): new messages."""
        rows = self.session.execute(
            update(UpdateTask)
            .where(UpdateTask.state == "queued", UpdateTask.created_at < older_than)
            .values(dispatch_id=func.md5(func.random().cast(String)))
            .returning(UpdateTask.id, UpdateTask.dispatch_id)
        ).all()
        return [{"task_id": r.id, "dispatch_id": r.dispatch_id} for r in rows]

    def claim(self, task_id, dispatch_id):
        """Mark the task running for this message; None when another message runs it or it is finished."""
        claimable = or_(
            UpdateTask.state == "queued",
            and_(UpdateTask.state == "running", UpdateTask.dispatch_id == dispatch_id),  # redelivered: taken over
        )
        claimed = self.session.execute(
            update(UpdateTask)
            .where(UpdateTask.id == task_id, claimable)
            .values(state="running", dispatch_id=dispatch_id, started_at=self.clock())
            .returning(UpdateTask.id)
        ).scalar_one_or_none()
        self.session.commit()
        if claimed is None:
            return None
        task = self.session.get(UpdateTask, task_id)
        self.session.refresh(task)
        return task

    def for_server(self, server_id, limit=20):
        return self.session.scalars(
            select(UpdateTask).where(UpdateTask.server_id == server_id).order_by(UpdateTask.created_at.desc()).limit(limit)
        ).all()


class StepLog:
    """Records a running task's steps, commits each, and reports progress."""

    def __init__(self, session, task, emit, clock=utcnow):
        self.session = session
        self.task = task
        self.emit = emit
        self.clock = clock

    def begin(self, name):
        task = self.task
        task.step_index += 1
        task.step_count = max(task.step_count, task.step_index)
        task.current_step = name
        step = TaskStep(task_id=task.id, name=name, status="running", started_at=self.clock(), output="")
        task.steps.append(step)
        self.session.commit()
        self._progress(name, "started")
        return step

    def end(self, step, ok, output=""):
        step.status = "succeeded" if ok else "failed"
        step.finished_at = self.clock()
        step.output = (output or "")[-MAX_OUTPUT:]
        self.session.commit()
        self._progress(step.name, "succeeded" if ok else "failed")

    def plan(self, count):
        self.task.step_count = self.task.step_index + count
        self.session.commit()

    def _progress(self, name, status):
        self.emit("update_progress", server_id=self.task.server_id, task_id=self.task.id, step=name,
                  step_index=self.task.step_index, step_count=self.task.step_count, status=status)

    def finish(self, state, error=None):
        self.task.state = state
        self.task.error = error
        self.task.current_step = None
        self.task.finished_at = self.clock()
        self.session.commit()

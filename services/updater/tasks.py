"""Update and diagnostics tasks on the shared task model (shared/tasks.py): what the API shows of an
update, and the step log either writes as it goes."""
from shared.leases import LeaseLost
from shared.tasks import task_dict

KIND = "update"


def update_task_dict(task):
    """An update task's row as the API shows it: the shared fields, what it updates, and its steps."""
    return dict(
        task_dict(task), component=task.component, target_version=task.target_version, outcome=task.outcome or {},
        rollout_id=task.rollout_id,
        steps=[{"name": s.name, "status": s.state, "started_at": s.started_at, "finished_at": s.finished_at,
                "output": s.output} for s in task.steps],
    )


def overlapping(Task, component):
    """Update tasks that touch ``component`` of a server (None: every component): one update of each at a time
    (a diagnostics run only reads, so it never holds an update back)."""
    if component is None:
        return Task.kind == KIND
    return (Task.kind == KIND) & (Task.component.is_(None) | (Task.component == component))


class StepLog:
    """A running update task's steps: each committed at once through the store, with its progress event in
    the same transaction (the outbox).

    ``task`` is the task's row as claimed (read here, changed only through the store);
    ``holder`` the lease holder that claimed it, ``may_act()`` whether its lease still holds."""

    def __init__(self, store, task, holder=None, may_act=lambda: True, progress_event="update_progress",
                 finished_event="update_finished", cancel_point=lambda task_id: None):
        self.store = store
        self._cancel_point = cancel_point  # TaskRunner.cancel_point
        self.task = task
        self.holder = holder
        self.may_act = may_act
        self.progress_event = progress_event  # None: steps say nothing on the broker (the log holds them)
        self.finished_event = finished_event
        self.names = {}

    def begin(self, name):
        if not self.may_act():
            raise LeaseLost(f"not starting step {name}: the lease on this task lapsed")
        task = self.task
        task.step_index += 1
        task.step_count = max(task.step_count, task.step_index)
        task.current_step = name
        self.names[task.step_index] = name
        self.store.step_started(task.id, task.step_index, name, events=self._progress(name, "started"))
        return task.step_index

    def cancel_point(self):
        """A point where stopping leaves the server as it was: TaskCancelled once someone asked to cancel."""
        self._cancel_point(self.task.id)

    def end(self, position, ok, output=""):
        status = "succeeded" if ok else "failed"
        self.store.step_finished(self.task.id, position, status, output,
                                 events=self._progress(self.names[position], status))

    def plan(self, count):
        self.task.step_count = self.task.step_index + count
        self.store.change(self.task.id, step_count=self.task.step_count)

    def record(self, outcome):
        self.task.outcome = outcome
        self.store.change(self.task.id, outcome=outcome)

    def _progress(self, name, status):
        if self.progress_event is None:
            return []
        return [(self.progress_event, {"server_id": self.task.server_id, "task_id": self.task.id, "step": name,
                                       "step_index": self.task.step_index, "step_count": self.task.step_count,
                                       "status": status})]

    def finish(self, state, error=None, events=()):
        """End the task with ``events`` [(name, payload)] in the same transaction; True only for the call that
        ended it (a replica whose lease lapsed finds it ended by another, which said so)."""
        ended = self.store.finish(self.task.id, state, error, holder=self.holder, events=events, current_step=None)
        if ended:
            self.task.state, self.task.error = state, error
        return ended

    def finished(self, state, error):
        """finish() with the ``*_finished`` event that says so."""
        return self.finish(state, error, [(self.finished_event, {
            "server_id": self.task.server_id, "server_name": self.task.server_name, "task_id": self.task.id,
            "state": state, "error": error})])

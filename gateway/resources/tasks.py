"""Long operations of every kind (installs, updates, backups, ...) and their step logs.

Each service that runs tasks keeps its own (shared/tasks.py) and answers the same three
calls; these resources ask each of them, so a task id needs no kind to be found.
"""
from datetime import datetime

from gateway.resources import principal
from shared.errors import ServiceUnavailable, TaskNotFound
from shared.schemas import load_or_raise
from shared.schemas.tasks import TaskQuery


class _Owners:
    NAMES = ("provisioner", "updater", "backup")

    def __init__(self, provisioner, updater, backup):
        self.owners = dict(zip(self.NAMES, (provisioner, updater, backup)))

    def ask(self, method, req, task_id):
        """The answer of the service that has the task. When none has it, a 404 that names the services
        that did not answer (the task may be one of theirs), so one service away does not hide the others'."""
        away = []
        for name, owner in self.owners.items():
            try:
                return getattr(owner, method)(principal(req), task_id)
            except TaskNotFound:
                continue
            except ServiceUnavailable:
                away.append(name)
        unasked = f" ({', '.join(away)} did not answer: it may be theirs)" if away else ""
        raise TaskNotFound(f"no task with id {task_id}{unasked}", {"unavailable": away} if away else None)


class TaskCollection(_Owners):
    def on_get(self, req, resp):
        query = load_or_raise(TaskQuery(), dict(req.params), "query")  # a bad query is one 400, not one per service
        items, total, away = [], 0, []
        for name, owner in self.owners.items():  # each hands its newest page * per_page: enough for any merged page
            try:
                answer = owner.list_tasks(principal(req), dict(req.params))
            except ServiceUnavailable:  # one service away hides only its own tasks, and the answer says so
                away.append(name)
                continue
            items.extend(answer["items"])
            total += answer["total"]
        if len(away) == len(self.owners):
            raise ServiceUnavailable("no service that runs tasks answered", {"unavailable": away})
        items.sort(key=lambda task: (datetime.fromisoformat(task["created_at"]), task["id"]), reverse=True)
        start = (query["page"] - 1) * query["per_page"]
        resp.media = {"items": items[start:start + query["per_page"]], "total": total,
                      "page": query["page"], "per_page": query["per_page"], "unavailable": away}


class TaskItem(_Owners):
    def on_get(self, req, resp, task_id):
        resp.media = self.ask("get_task", req, task_id)


class TaskLog(_Owners):
    def on_get(self, req, resp, task_id):
        resp.media = self.ask("task_log", req, task_id)


class TaskCancel(_Owners):
    def on_post(self, req, resp, task_id):
        resp.media = self.ask("cancel_task", req, task_id)

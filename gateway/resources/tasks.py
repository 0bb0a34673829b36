"""Long operations (installs, ...) and their step logs."""
from gateway.resources import principal


class TaskItem:
    def __init__(self, provisioner):
        self.provisioner = provisioner

    def on_get(self, req, resp, task_id):
        resp.media = self.provisioner.get_task(principal(req), task_id)


class TaskLog:
    def __init__(self, provisioner):
        self.provisioner = provisioner

    def on_get(self, req, resp, task_id):
        resp.media = self.provisioner.task_log(principal(req), task_id)

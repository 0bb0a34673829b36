"""Diagnostics as a task (kind ``diagnostics`` on the updater's task runner): one step per check, each
check's result kept in the task's outcome as it comes, and the step log is the log to download.

The checks: SSH login, then pv_diagnose.py's own on the server (runtime, monitor, rabbitmq, disk: one
step each as the script runs them), then heartbeat freshness as monitoring-ingest sees it. The checks
only read, so a cancelled run stops before its next check.
"""
import json
import re

from services.updater.remote import root_command
from shared.errors import DiagnosticsNotFound, SshFailed, TaskNotFound
from shared.tasks import task_dict

KIND = "diagnostics"
REMOTE_SCRIPT = "opt/steward/pv_diagnose.py"
# pv_diagnose.py says "== check NAME" as a check begins, and prints its result as one JSON line.
_CHECK_STARTED = re.compile(r"^== check (?P<name>\S+)\s*$")


def diagnostics_dict(task):
    """A diagnostics task as the API shows it: the shared fields and each check's result so far."""
    return dict(task_dict(task), checks=(task.outcome or {}).get("checks", []))


def diagnostics_of(store, server_id, task_id):
    """The diagnostics task ``task_id`` of the server (its row, detached), or DiagnosticsNotFound."""
    try:
        task = store.row(task_id)
    except TaskNotFound:
        task = None
    if task is None or task.kind != KIND or task.server_id != server_id:
        raise DiagnosticsNotFound(f"no diagnostics run {task_id} for server {server_id}")
    return task


def parse_check(line):
    """One check's result from a pv_diagnose.py line ({"name", "status", "message"}), or None."""
    try:
        item = json.loads(line)
    except ValueError:
        return None
    if isinstance(item, dict) and {"name", "status", "message"} <= item.keys():
        return {k: str(item[k]) for k in ("name", "status", "message")}
    return None


def heartbeat_check(monitoring, server_id):
    """(status, message) of the server's heartbeats as monitoring-ingest sees them."""
    try:
        status = monitoring.fleet_status([server_id])[str(server_id)]
    except Exception as exc:  # noqa: BLE001 - monitoring absent or down: say so, do not guess
        return "unknown", f"monitoring-ingest did not answer ({exc.__class__.__name__}); heartbeat freshness unknown"
    last = status.get("last_heartbeat_at")
    if status.get("state") == "up":
        return "passed", f"heartbeats are fresh (last at {last}, {status.get('requests', 0)} in the last 2 minutes)"
    if last is None:
        return "failed", "no heartbeat has ever arrived from this server"
    return "failed", f"heartbeats stopped: the last arrived at {last}"


class Diagnose:
    """One diagnostics run. ``steps`` a tasks.StepLog of the claimed task (it stops the run between checks once
    cancelled); ``connect()`` an SSH Connection to the server; ``heartbeat()`` -> (status, message)."""

    def __init__(self, steps, connect, heartbeat):
        self.steps = steps
        self.connect = connect
        self.heartbeat = heartbeat
        self.checks = []

    def run(self):
        position = self._begin("ssh")
        try:
            shell = self.connect()
        except Exception as exc:  # noqa: BLE001 - every way SSH fails is reported as the ssh check
            self._record(position, {"name": "ssh", "status": "failed", "message": f"cannot log in over SSH: {exc}"})
        else:
            try:
                self._record(position, {"name": "ssh", "status": "passed", "message": "logged in over SSH"})
                self._remote_checks(shell)
            finally:
                shell.close()
        position = self._begin("heartbeat")
        status, message = self.heartbeat()
        self._record(position, {"name": "heartbeat", "status": status, "message": message})
        failed = [c["name"] for c in self.checks if c["status"] == "failed"]
        self.steps.finished("failed" if failed else "succeeded", f"failed checks: {', '.join(failed)}" if failed else None)

    def _begin(self, name):
        self.steps.cancel_point()
        self.steps.plan(1)
        return self.steps.begin(name)

    def _record(self, position, check, output=""):
        """A check's result: kept with the task at once, and its step ended with it (an unknown one does not fail)."""
        self.checks.append(check)
        self.steps.record({"checks": list(self.checks)})
        line = f"[{check['status']}] {check['name']}: {check['message']}"
        self.steps.end(position, check["status"] != "failed", f"{output.rstrip()}\n{line}" if output.strip() else line)

    def _remote_checks(self, shell):
        command = root_command(shell, REMOTE_SCRIPT, [])
        current = {"position": None, "name": None, "lines": [f"$ {command}"]}

        def on_line(line):
            started, check = _CHECK_STARTED.match(line), parse_check(line)
            if started:
                current.update(position=self._begin(started["name"]), name=started["name"], lines=[])
            elif check is not None:
                if current["name"] != check["name"]:  # a pv_diagnose.py that does not say "== check"
                    current["position"] = self._begin(check["name"])
                self._record(current["position"], check, "\n".join(current["lines"]))
                current.update(position=None, name=None, lines=[])
            else:
                current["lines"].append(line)

        found = len(self.checks)
        try:
            status = shell.stream(command, on_line)
            ended = f"exit {status}"
        except SshFailed as exc:
            ended = str(exc)
        if current["position"] is not None:  # the script died in a check
            self._record(current["position"], {"name": current["name"], "status": "failed",
                                               "message": f"pv_diagnose.py stopped during this check ({ended})"},
                         "\n".join(current["lines"]))
        elif len(self.checks) == found:
            self._record(self._begin("runtime"), {"name": "runtime", "status": "failed",
                                                  "message": f"pv_diagnose.py did not run ({ended}); see the log"},
                         "\n".join(current["lines"]))

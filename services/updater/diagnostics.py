"""Diagnostics runs: pv_diagnose.py's checks on the server, plus heartbeat freshness from monitoring.

Every run is kept with its log, so an operator can download what was seen.
"""
import json
import uuid

from services.updater.models import DiagnosticsRun
from services.updater.remote import prefixed_command
from services.updater.tasks import utcnow
from shared.errors import DiagnosticsNotFound

REMOTE_SCRIPT = "opt/steward/pv_diagnose.py"


def run_dict(run):
    return {"id": run.id, "server_id": run.server_id, "server_name": run.server_name, "state": run.state,
            "checks": run.checks, "created_at": run.created_at, "finished_at": run.finished_at}


def parse_checks(output):
    """pv_diagnose.py prints one JSON object per check; anything else is log text."""
    checks = []
    for line in output.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and {"name", "status", "message"} <= item.keys():
            checks.append({k: str(item[k]) for k in ("name", "status", "message")})
    return checks


class Diagnostics:
    def __init__(self, session, clock=utcnow):
        self.session = session
        self.clock = clock

    def get(self, server_id, run_id):
        run = self.session.get(DiagnosticsRun, run_id)
        if run is None or run.server_id != server_id:
            raise DiagnosticsNotFound(f"no diagnostics run {run_id} for server {server_id}")
        return run

    def run(self, server, requested_by, open_shell, heartbeat_check):
        """``open_shell()`` connects to the server (an SSH Connection); ``heartbeat_check()`` -> (status, message)."""
        run = DiagnosticsRun(id=uuid.uuid4().hex, server_id=server["id"], server_name=server["name"], state="running",
                             checks=[], log="", requested_by=requested_by)
        self.session.add(run)
        self.session.commit()
        log = [f"diagnostics of {server['name']} (server {server['id']}) at {self.clock().isoformat()}"]
        checks = []
        try:
            shell = open_shell()
        except Exception as exc:  # noqa: BLE001 - every way SSH fails is reported as the ssh check
            checks.append({"name": "ssh", "status": "failed", "message": f"cannot log in over SSH: {exc}"})
            log.append(f"ssh: {exc}")
        else:
            try:
                checks.append({"name": "ssh", "status": "passed", "message": "logged in over SSH"})
                command = prefixed_command(REMOTE_SCRIPT, [])
                status, output = shell.run(command, root=True)
                log.append(f"$ {command}\n{output.rstrip()}\n(exit {status})")
                found = parse_checks(output)
                if not found:
                    found = [{"name": "runtime", "status": "failed",
                              "message": f"pv_diagnose.py did not run (exit {status}); see the log"}]
                checks.extend(found)
            finally:
                shell.close()
        status, message = heartbeat_check()
        checks.append({"name": "heartbeat", "status": status, "message": message})
        log.append(f"heartbeat: {status}: {message}")
        for check in checks:
            log.append(f"[{check['status']}] {check['name']}: {check['message']}")
        run.checks = checks
        run.log = "\n".join(log) + "\n"
        run.state = "failed" if any(c["status"] == "failed" for c in checks) else "passed"
        run.finished_at = self.clock()
        self.session.commit()
        return run

"""A push install: build the bundle, SSH in, upload, extract, and run the steps one by one.

Each step's start, end, duration and output go to the task's log and an
``install_progress`` event says "step k of N: name" as it happens. The first
failing step ends the task with that step's output in its error.
"""
import io
import json
import logging
import re

from services.provisioner.bundle import pv_install_steps
from services.provisioner.exceptions import StepFailed
from shared import ssh
from shared.errors import StewardError
from shared.leases import LeaseLost

log = logging.getLogger("provisioner.install")

OUTPUT_IN_ERROR = 2000  # characters of a failed step's output quoted in the task's error

# The provisioner's own steps around pv_install.py's; one list, so "step k of N" is known up front.
BEFORE = ("build_bundle", "connect", "upload", "extract", "install_python3")
AFTER = ("record_state",)
# A cancelled install stops only before these: until the bundle (it holds the agent token) reaches the server,
# stopping leaves it as it was; after, a half-done install would help no one, so it runs to its end.
CANCELLABLE_BEFORE = ("build_bundle", "connect", "upload")

# pv_install.py's lines around each step: "== step 3 of 11: NAME", "== step NAME done in 0.52 s",
# "== step NAME failed: MESSAGE" (tests/unit/test_install_markers.py holds the script to them).
_STARTED = re.compile(r"^== step \d+ of \d+: (?P<name>\S+)\s*$")
_DONE = re.compile(r"^== step (?P<name>\S+) done in ")
_FAILED = re.compile(r"^== step (?P<name>\S+) failed: (?P<message>.*)$")


def install_steps():
    """[(name, needs root)] of a push install, in order."""
    return [(name, False) for name in BEFORE] + list(pv_install_steps()) + [(name, False) for name in AFTER]


def step_marker(line):
    """("started", step) / ("done", step) / ("failed", step, message) for pv_install.py's step lines, else None."""
    if match := _STARTED.match(line):
        return ("started", match["name"])
    if match := _DONE.match(line):
        return ("done", match["name"])
    if match := _FAILED.match(line):
        return ("failed", match["name"], match["message"])
    return None


class Installer:
    def __init__(self, store, host_keys, issuer, inventory, emit, secret_box, connect=ssh.connect, holder=None,
                 may_act=lambda: True, cancel_point=lambda task_id: None):
        self.store = store
        self.secret_box = secret_box  # opens the SSH credentials inventory hands over sealed
        self.holder = holder  # the lease holder that claimed the tasks this installer runs
        self.may_act = may_act  # False once the holder's lease may have lapsed: act no more
        self.cancel_point = cancel_point  # TaskRunner.cancel_point: raises TaskCancelled once asked to
        self.host_keys = host_keys
        self.issuer = issuer
        self.inventory = inventory
        self.emit = emit  # emit(event_name, **payload)
        self.connect = connect

    def run(self, task_id):
        params = self.store.params(task_id)
        run = _InstallRun(self, task_id, params)
        try:
            run.execute()
        finally:
            run.close()


class _InstallRun:
    def __init__(self, installer, task_id, params):
        self.installer = installer
        self.store = installer.store
        self.task_id = task_id
        self.server = params["server"]
        self.requested_by = params["requested_by"]
        self.steps = install_steps()
        self.connection = None
        self.bundle = None
        self.home = self.prefix = None

    @property
    def bundle_dir(self):
        return f"setup-{self.server['id']}"

    def _progress(self, position, name, status):
        self.installer.emit("install_progress", server_id=self.server["id"], task_id=self.task_id, step=name,
                            step_index=position, step_count=len(self.steps), status=status)

    def execute(self):
        pv_steps = [name for name, _ in pv_install_steps()]
        for position, (name, _root) in enumerate(self.steps, 1):
            if name in pv_steps:
                # pv_install.py's steps run in one remote process that reports each step as it goes.
                if name == pv_steps[0] and not self._run_pv_install(position):
                    return
                continue
            self._begin(position, name)
            try:
                output = getattr(self, f"step_{name}")()
            except (StepFailed, StewardError) as exc:
                self._fail(position, name, str(exc))
                return
            self._succeed(position, name, output)
        self._finish("succeeded", None)

    def _begin(self, position, name):
        if not self.installer.may_act():
            raise LeaseLost(f"not starting step {name}: the lease on this task lapsed")
        if name in CANCELLABLE_BEFORE:
            self.installer.cancel_point(self.task_id)
        self.store.step_started(self.task_id, position, name)
        self._progress(position, name, "started")

    def _succeed(self, position, name, output):
        self.store.step_finished(self.task_id, position, "succeeded", output)
        self._progress(position, name, "succeeded")

    def _fail(self, position, name, message):
        self.store.step_finished(self.task_id, position, "failed", message)
        self._progress(position, name, "failed")
        error = f"step {position} of {len(self.steps)} ({name}) failed: {message[-OUTPUT_IN_ERROR:]}"
        self._finish("failed", error)

    def _run_pv_install(self, first_position):
        """Every pv_install.py step in one SSH session (one sudo, one python3): its "== step"
        lines mark each step's start and end, so the log and events still follow step by step.
        A non-root login runs the approved copy through the entry point, with the upload's own files only."""
        names = [name for name, _ in pv_install_steps()]
        current = {"position": None, "name": None, "lines": [], "failed": None}

        def on_line(line):
            marker = step_marker(line)
            if marker is None:
                current["lines"].append(line)
            elif marker[0] == "started":
                current.update(position=first_position + names.index(marker[1]), name=marker[1], lines=[])
                self._begin(current["position"], current["name"])
            elif marker[0] == "done":
                self._succeed(current["position"], current["name"], "\n".join(current["lines"]).strip())
                current["name"] = None
            else:  # failed: the step's own output is the message
                current["failed"] = "\n".join(current["lines"] + [marker[2]]).strip()

        bundle = f"{self.home}/{self.bundle_dir}"
        command = self.connection.as_root(
            f"python3 {ssh.quote(bundle)}/pv_install.py --prefix {ssh.quote(self.prefix)}", ["install", bundle])
        status = self.connection.stream(command, on_line)
        if current["name"] is not None or status:
            # A failed step, or the process died without saying (then the step it was in failed).
            position = current["position"] or first_position
            name = current["name"] or names[0]
            if current["name"] is None:
                self._begin(position, name)
            self._fail(position, name, current["failed"] or "\n".join(current["lines"]).strip()
                       or f"pv_install.py exited with status {status}")
            return False
        return True

    def _finish(self, state, error):
        finished = {"server_id": self.server["id"], "server_name": self.server["name"], "task_id": self.task_id,
                    "state": state, "error": error}
        # install_finished commits with the end, and only if this call ended the task.
        if not self.store.finish(self.task_id, state, error, holder=self.installer.holder,
                                 events=[("install_finished", finished)]):
            log.warning("install %s ended %s here, but another replica had already ended it", self.task_id, state,
                        extra={"task_id": self.task_id})
            return  # the one that ended it said so
        log.info("install %s on server %s: %s", self.task_id, self.server["id"], state,
                 extra={"task_id": self.task_id, "server_id": self.server["id"], "state": state})

    def close(self):
        if self.connection is not None:
            self.connection.close()

    # -- the provisioner's own steps -------------------------------------------
    def step_build_bundle(self):
        filename, self.bundle, sha256 = self.installer.issuer.issue(self.server, "install", self.requested_by)
        return f"{filename}: {len(self.bundle)} bytes, sha256 {sha256}"

    def step_connect(self):
        server_id = self.server["id"]
        credentials = ssh.open_credentials(self.installer.secret_box,
                                           self.installer.inventory.server_credentials(server_id))
        pinned = self.installer.host_keys.pinned(server_id)
        self.connection = self.installer.connect(
            credentials["address"], credentials["port"], credentials["user"],
            password=credentials["password"], private_key=credentials["private_key"], pinned=pinned,
        )
        key = self.connection.host_key
        if pinned is None:
            self.installer.host_keys.pin(server_id, credentials["address"], credentials["port"], key)
            pin_note = "pinned on first use"
        else:
            pin_note = "matches the pinned key"
        status, output = self.connection.run('printf "%s\\n%s\\n" "$HOME" "${STEWARD_PREFIX:-/}"')
        if status:
            raise StepFailed(f"cannot read the remote home directory: {output}")
        self.home, self.prefix = output.split("\n")[:2]
        via = "directly as root" if not self.connection.sudo else f"with sudo -n {ssh.ROOT_ENTRY} for the root steps"
        return (f"connected to {credentials['user']}@{credentials['address']}:{credentials['port']} ({via}); "
                f"host key {key.get_name()} {ssh.fingerprint(key)} {pin_note}; install prefix {self.prefix}")

    def step_upload(self):
        remote = f"{self.home}/{self.bundle_dir}.tar"
        self.connection.upload(io.BytesIO(self.bundle), remote)
        return f"uploaded {len(self.bundle)} bytes to {remote} over SFTP"

    def step_extract(self):
        return self._remote(f"cd {ssh.quote(self.home)} && rm -rf {self.bundle_dir} && tar -xf {self.bundle_dir}.tar "
                            f"&& rm -f {self.bundle_dir}.tar && echo extracted into $PWD/{self.bundle_dir}")

    def step_install_python3(self):
        output = self._remote(self.connection.as_root(
            f"bash {ssh.quote(self.home)}/{self.bundle_dir}/install_python3.sh", ["install-python3"]))
        if "PVOK" not in output.split():
            raise StepFailed(f"install_python3.sh did not print PVOK:\n{output}")
        return output

    def step_record_state(self):
        # What the start scripts recorded as running is the truth, not what was asked for.
        state_file = f"{self.prefix.rstrip('/')}/provision/state/components.json"
        versions = json.loads(self._remote(f"cat {ssh.quote(state_file)}"))
        for component, version in sorted(versions.items()):
            self.installer.inventory.set_component_state(self.server["id"], component, "running", version)
        # The extracted bundle holds the agent token: it is installed now, so remove the copy (the login user's).
        self._remote(f"rm -rf {ssh.quote(self.home)}/{self.bundle_dir}")
        return "recorded running: " + ", ".join(f"{c} {v}" for c, v in sorted(versions.items()))

    def _remote(self, command):
        status, output = self.connection.run(command)
        if status:
            raise StepFailed(output.strip() or f"exited with status {status}")
        return output.strip()

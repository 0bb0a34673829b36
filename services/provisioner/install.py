"""A push install: build the bundle, SSH in, upload, extract, and run the steps one by one.

Each step's start, end, duration and output go to the task's log and an
``install_progress`` event says "step k of N: name" as it happens. The first
failing step ends the task with that step's output in its error.
"""
import json
import logging

from services.provisioner import ssh
from services.provisioner.components import install_steps, pv_install
from services.provisioner.exceptions import StepFailed
from shared.errors import StewardError

log = logging.getLogger("provisioner.install")

OUTPUT_IN_ERROR = 2000  # characters of a failed step's output quoted in the task's error


class Installer:
    def __init__(self, store, host_keys, issuer, inventory, emit, connect=ssh.connect):
        self.store = store
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
        pv_steps = {name for name, _ in pv_install.STEPS}
        for position, (name, _root) in enumerate(self.steps, 1):
            if name in pv_steps:
                # pv_install.py's steps run in one remote process that reports each step as it goes.
                if name == pv_install.STEPS[0][0] and not self._run_pv_install(position):
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
        lines mark each step's start and end, so the log and events still follow step by step."""
        names = [name for name, _ in pv_install.STEPS]
        current = {"position": None, "name": None, "lines": [], "failed": None}

        def on_line(line):
            marker = pv_install.parse_marker(line)
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

        status = self.connection.stream(
            f"python3 {ssh.quote(self.home)}/{self.bundle_dir}/pv_install.py --prefix {ssh.quote(self.prefix)}",
            on_line, root=True)
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
        self.store.finish(self.task_id, state, error)
        log.info("install %s on server %s: %s", self.task_id, self.server["id"], state,
                 extra={"task_id": self.task_id, "server_id": self.server["id"], "state": state})
        self.installer.emit("install_finished", server_id=self.server["id"], server_name=self.server["name"],
                            task_id=self.task_id, state=state, error=error)

    def close(self):
        if self.connection is not None:
            self.connection.close()

    # -- the provisioner's own steps -------------------------------------------
    def step_build_bundle(self):
        filename, self.bundle, sha256 = self.installer.issuer.issue(self.server, "install", self.requested_by)
        return f"{filename}: {len(self.bundle)} bytes, sha256 {sha256}"

    def step_connect(self):
        server_id = self.server["id"]
        credentials = self.installer.inventory.server_credentials(server_id)
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
        via = "directly as root" if not self.connection.sudo else "with sudo for the root steps"
        return (f"connected to {credentials['user']}@{credentials['address']}:{credentials['port']} ({via}); "
                f"host key {key.get_name()} {ssh.fingerprint(key)} {pin_note}; install prefix {self.prefix}")

    def step_upload(self):
        remote = f"{self.home}/{self.bundle_dir}.tar"
        self.connection.upload(self.bundle, remote)
        return f"uploaded {len(self.bundle)} bytes to {remote} over SFTP"

    def step_extract(self):
        return self._remote(f"cd {ssh.quote(self.home)} && rm -rf {self.bundle_dir} && tar -xf {self.bundle_dir}.tar "
                            f"&& rm -f {self.bundle_dir}.tar && echo extracted into $PWD/{self.bundle_dir}")

    def step_install_python3(self):
        output = self._remote(f"bash {ssh.quote(self.home)}/{self.bundle_dir}/install_python3.sh", root=True)
        if "PVOK" not in output.split():
            raise StepFailed(f"install_python3.sh did not print PVOK:\n{output}")
        return output

    def step_record_state(self):
        # What the start scripts recorded as running is the truth, not what was asked for.
        state_file = f"{self.prefix.rstrip('/')}/provision/state/components.json"
        versions = json.loads(self._remote(f"cat {ssh.quote(state_file)}"))
        for component, version in sorted(versions.items()):
            self.installer.inventory.set_component_state(self.server["id"], component, "running", version)
        # The extracted bundle holds the agent token: it is installed now, so remove the copy.
        self._remote(f"rm -rf {ssh.quote(self.home)}/{self.bundle_dir}", root=True)
        return "recorded running: " + ", ".join(f"{c} {v}" for c, v in sorted(versions.items()))

    def _remote(self, command, root=False):
        status, output = self.connection.run(command, root=root)
        if status:
            raise StepFailed(output.strip() or f"exited with status {status}")
        return output.strip()

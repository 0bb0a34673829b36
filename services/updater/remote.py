"""The updater's hands on a managed server: pv_update.py's subcommands over SSH.

Every step the updater takes on a server is one ``pv_update.py`` subcommand
(the script the bundle installs in ``<prefix>/opt/steward``), so a push update
and an update run by hand on the server do the same things.
"""
import json
import shlex
import uuid

REMOTE_SCRIPT = "opt/steward/pv_update.py"


class RemoteFailed(Exception):
    """A command on the server exited non-zero; ``output`` is what it printed."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


class ComponentHost:
    """pv_update.py on one server, through a ``shell`` with ``run(command) -> (status, output)`` and ``put``."""

    def __init__(self, shell, prefix="/", sudo=False):
        self.shell = shell
        self.prefix = prefix.rstrip("/")
        self.sudo = sudo

    def path(self, relative):
        return f"{self.prefix}/{relative}"

    def _command(self, *args):
        words = ["env", f"STEWARD_PREFIX={self.prefix or '/'}", "python3", self.path(REMOTE_SCRIPT), *args]
        command = " ".join(shlex.quote(w) for w in words)
        return f"sudo -n {command}" if self.sudo else command

    def call(self, *args):
        status, output = self.shell.run(self._command(*args))
        if status != 0:
            raise RemoteFailed(f"pv_update.py {' '.join(args)} exited with {status}", output)
        return output

    def state(self):
        return json.loads(self.call("state").strip().splitlines()[-1])

    def stop(self, component):
        return self.call("stop", component)

    def start(self, component, version):
        return self.call("start", component, "-v", version)

    def verify(self, component):
        return self.call("verify", component)

    def install(self, local_image, component, version, sha256):
        """Transfer the image, then unpack it on the server (pv_update.py checks it again there)."""
        # Uploaded as the login user (who may not own the prefix); pv_update.py, run with sudo when needed, moves it in.
        remote = f"/tmp/pv-image-{component}-{version}-{uuid.uuid4().hex[:8]}.tar.gz"
        self.shell.put(local_image, remote)
        try:
            return self.call("install", remote, "--sha256", sha256)
        finally:
            self.shell.run(f"rm -f {shlex.quote(remote)}")

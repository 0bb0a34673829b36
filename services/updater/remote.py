"""The updater's hands on a managed server: pv_update.py's subcommands over SSH.

Every step the updater takes on a server is one ``pv_update.py`` subcommand
(the script the bundle installs in ``<prefix>/opt/steward``), so a push update
and an update run by hand on the server do the same things.
"""
import json
import shlex
import uuid

import paramiko

from shared.errors import SshFailed

REMOTE_SCRIPT = "opt/steward/pv_update.py"


class RemoteFailed(Exception):
    """A command on the server exited non-zero; ``output`` is what it printed."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


def prefixed_command(script, args):
    """Run a bundle script under the server's install prefix.

    The prefix is the login session's $STEWARD_PREFIX (unset in production: /); it is
    passed on explicitly because sudo resets the environment.
    """
    words = " ".join(shlex.quote(a) for a in args)
    command = (f'env STEWARD_PREFIX="${{STEWARD_PREFIX:-/}}" python3 "${{STEWARD_PREFIX%/}}/{script}"'
               + (f" {words}" if words else ""))
    return command


def upload_file(connection, local, remote):
    """Stream a file to the server over SFTP (an image is never read whole into memory)."""
    try:
        with connection.client.open_sftp() as sftp:
            sftp.put(local, remote)
            sftp.chmod(remote, 0o600)
    except (paramiko.SSHException, OSError) as exc:
        raise SshFailed(f"upload to {remote} failed: {exc}") from None


class ComponentHost:
    """pv_update.py on one server, over the provisioner's SSH ``Connection`` (root steps through sudo -n)."""

    def __init__(self, connection):
        self.connection = connection

    def call(self, *args):
        status, output = self.connection.run(prefixed_command(REMOTE_SCRIPT, args), root=True)
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
        upload_file(self.connection, local_image, remote)
        try:
            return self.call("install", remote, "--sha256", sha256)
        finally:
            self.connection.run(f"rm -f {shlex.quote(remote)}")

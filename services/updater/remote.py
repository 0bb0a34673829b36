"""The updater's hands on a managed server: pv_update.py's subcommands over SSH.

Every step the updater takes on a server is one ``pv_update.py`` subcommand
(the script the bundle installs in ``<prefix>/opt/steward``), so a push update
and an update run by hand on the server do the same things.

A step runs apart from the SSH session (``pv_update.py detach``) and the updater
asks for its result (``pv_update.py result``): when the connection drops mid-step,
the step still ends on the server, and the updater connects again and picks up
its output and exit status instead of leaving the server half-way.
"""
import json
import logging
import posixpath
import shlex
import time
import uuid

from services.updater.exceptions import RemoteFailed
from shared.errors import HostKeyChanged, SshFailed

log = logging.getLogger("updater")
STILL_RUNNING = 75  # pv_update.py result: the run has not ended yet
RESULT_WAIT_SECONDS = 20  # one `result` call waits this long on the server before answering "still running"
RECONNECT_SECONDS = 120  # how long a dropped server may stay unreachable before the step counts as failed

REMOTE_SCRIPT = "opt/steward/pv_update.py"
# The entry point's name for each script (steward-root update|diagnose ARGS), for a non-root login.
_ENTRY_VERBS = {"pv_update.py": "update", "pv_diagnose.py": "diagnose"}


def prefixed_command(script, args):
    """Run a bundle script under the server's install prefix.

    The prefix is the login session's $STEWARD_PREFIX (unset in production: /); it is
    passed on explicitly because sudo resets the environment.
    """
    words = " ".join(shlex.quote(a) for a in args)
    command = (f'env STEWARD_PREFIX="${{STEWARD_PREFIX:-/}}" python3 "${{STEWARD_PREFIX%/}}/{script}"'
               + (f" {words}" if words else ""))
    return command


def root_command(connection, script, args):
    """``script`` ARGS as root: a root login runs the installed script under its prefix, any other login
    the entry point prepare_server.sh made (``Connection.as_root``), the one thing its sudoers rule allows."""
    return connection.as_root(prefixed_command(script, args), [_ENTRY_VERBS[posixpath.basename(script)], *args])


class ComponentHost:
    """pv_update.py on one server, as root, over shared/ssh.py's ``Connection``.

    ``reconnect`` opens a new connection to the same server (with the same pinned key) after one dropped.
    """

    def __init__(self, connection, reconnect=None, reconnect_seconds=RECONNECT_SECONDS, sleep=time.sleep):
        self.connection = connection
        self.reconnect = reconnect
        self.reconnect_seconds = reconnect_seconds
        self.sleep = sleep

    def call(self, *args):
        run_id = uuid.uuid4().hex
        # Starting twice starts once.
        self._run(root_command(self.connection, REMOTE_SCRIPT, ["detach", run_id, "--", *args]))
        status, output = STILL_RUNNING, ""
        while status == STILL_RUNNING:
            status, output = self._run(root_command(self.connection, REMOTE_SCRIPT,
                                                    ["result", run_id, "--wait", str(RESULT_WAIT_SECONDS)]))
        if status != 0:
            raise RemoteFailed(f"pv_update.py {' '.join(args)} exited with {status}", output)
        return output

    def _run(self, command):
        """(status, output) of a command; a dropped session is opened again (as the same user) and the command
        repeated (every command sent this way may run twice: detach and result are made so)."""
        try:
            return self.connection.run(command)
        except SshFailed as exc:
            if self.reconnect is None:
                raise
            log.warning("SSH session lost (%s); connecting again", exc)
        deadline = time.monotonic() + self.reconnect_seconds
        while True:
            self.connection.close()
            try:
                self.connection = self.reconnect()
                return self.connection.run(command)
            except HostKeyChanged:
                raise
            except SshFailed as exc:
                if time.monotonic() >= deadline:
                    raise SshFailed(f"the server stayed unreachable for {self.reconnect_seconds} s "
                                    f"after the SSH session dropped: {exc}") from None
                self.sleep(1.0)

    def state(self):
        return json.loads(self.call("state").strip().splitlines()[-1])

    def stop(self, component):
        return self.call("stop", component)

    def start(self, component, version):
        return self.call("start", component, "-v", version)

    def verify(self, component):
        return self.call("verify", component)

    def rollback(self, component, version):
        """Stop whatever runs, put back the complete state kept when ``version`` was stopped, start it."""
        return self.call("rollback", component, "-v", version)

    def install(self, local_image, component, version, sha256):
        """Transfer the image, then unpack it on the server (pv_update.py checks it again there)."""
        # Uploaded as the login user (who may not own the prefix); pv_update.py, run as root, moves it in.
        remote = f"/tmp/pv-image-{component}-{version}-{uuid.uuid4().hex[:8]}.tar.gz"
        with open(local_image, "rb") as image:  # streamed: an image is never read whole into memory
            self.connection.upload(image, remote)
        try:
            return self.call("install", remote, "--sha256", sha256)
        finally:
            self._run(f"rm -f {shlex.quote(remote)}")

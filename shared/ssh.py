"""SSH to a managed server with paramiko: host keys pinned on first use, clear errors,
and commands whose output is returned, never the credentials.

The provisioner (installs, cleanup) and the updater (updates, diagnostics) both reach
servers through this one client; the provisioner keeps the pinned keys.
"""
import base64
import hashlib
import io
import shlex
import socket
import threading

import paramiko

from shared.crypto import SSH_PASSWORD, SSH_PRIVATE_KEY
from shared.errors import HostKeyChanged, SshFailed

CONNECT_TIMEOUT = 10.0
# All a non-root login may run as root: the entry point agent/provision/prepare_server.sh made, root-owned
# under the session's install prefix, through sudo -n (its sudoers rule names this and nothing else).
ROOT_ENTRY = '"${STEWARD_PREFIX%/}/usr/local/sbin/steward-root"'
_KEY_TYPES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def fingerprint(key):
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def load_private_key(text):
    for key_class in _KEY_TYPES:
        try:
            return key_class.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise SshFailed("the stored SSH private key cannot be read (OpenSSH or PEM, unencrypted)")


class _RecordKey(paramiko.MissingHostKeyPolicy):
    """First contact: accept the key and keep it, so the caller can pin it."""

    def __init__(self):
        self.key = None

    def missing_host_key(self, client, hostname, key):
        self.key = key


class Connection:
    """One SSH session: run commands, upload files; ``sudo`` set for a non-root user (root steps: ``as_root``)."""

    def __init__(self, client, user, host_key):
        self.client = client
        self.user = user
        self.host_key = host_key
        self.sudo = user != "root"

    def as_root(self, command, entry_args):
        """The shell command for a root step: ``command`` itself when logged in as root; otherwise the entry
        point with ``entry_args`` through sudo -n, which runs only the code an administrator approved."""
        if not self.sudo:
            return command
        return " ".join(["sudo -n", ROOT_ENTRY] + [quote(a) for a in entry_args])

    def run(self, command, timeout=600):
        """(exit status, combined output) of a shell command, as the login user."""
        lines = []
        status = self.stream(command, lines.append, timeout=timeout)
        return status, "\n".join(lines)

    def stream(self, command, on_line, timeout=600):
        """Run a command, calling ``on_line`` with each line of its output as it comes; its exit status."""
        try:
            channel = self.client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
            channel.settimeout(timeout)
            channel.set_combine_stderr(True)
            channel.exec_command(command)
            pending = b""
            while data := channel.recv(65536):
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))
            if pending:
                on_line(pending.decode("utf-8", "replace"))
            status = channel.recv_exit_status()
            channel.close()
        # EOFError: paramiko raises its transport's own end when the connection dropped while a channel opened.
        except (socket.timeout, paramiko.SSHException, OSError, EOFError) as exc:
            raise SshFailed(f"lost the SSH session while running a command: {exc or type(exc).__name__}") from None
        return status

    def upload(self, source, remote_path):
        """Stream the open binary file ``source`` to ``remote_path`` over SFTP (pipelined, mode 0600)."""
        try:
            with self.client.open_sftp() as sftp:
                sftp.putfo(source, remote_path)
                sftp.chmod(remote_path, 0o600)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshFailed(f"upload to {remote_path} failed: {exc or type(exc).__name__}") from None

    def close(self):
        close_client(self.client)


def close_client(client):
    """Close a session after its transport thread has let go of the socket.

    paramiko closes the socket under its transport thread, which may be waiting on
    it. Under eventlet that leaves the thread's listener on a number the kernel
    hands out again, and the next socket to get it fails with "Second simultaneous
    read" (eventlet#94). Shutting the socket down wakes the thread with an end of
    file; it closes the socket itself on its way out, and then the client closes.
    """
    transport = client.get_transport()
    if transport is not None and transport.is_alive() and transport is not threading.current_thread():
        try:
            transport.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone
        transport.join(CONNECT_TIMEOUT)
    client.close()


def open_credentials(box, credentials):
    """inventory's ``server_credentials`` answer with its password or key, sealed for the broker, opened here
    in the process that connects (``box``: the deployment's shared.crypto.SecretBox)."""
    return dict(credentials, password=box.open_sealed(SSH_PASSWORD, credentials.get("password")),
                private_key=box.open_sealed(SSH_PRIVATE_KEY, credentials.get("private_key")))


def connect(address, port, user, password=None, private_key=None, pinned=None, timeout=CONNECT_TIMEOUT):
    """Open a session. ``pinned`` is (key_type, base64) from an earlier contact, or None.

    A changed host key raises HostKeyChanged before any credential is sent; a
    rejected password or key raises SshFailed at once (no retries, no agent, no
    key files of this machine are tried).
    """
    if not password and not private_key:
        raise SshFailed(f"no SSH password or key is stored for {user}@{address}")
    client = paramiko.SSHClient()
    policy = _RecordKey()
    client.set_missing_host_key_policy(policy)
    known_as = address if port == 22 else f"[{address}]:{port}"
    if pinned:
        key_type, key_base64 = pinned
        client.get_host_keys().add(known_as, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(key_base64)))
    try:
        client.connect(
            address, port=port, username=user, password=password,
            pkey=load_private_key(private_key) if private_key else None,
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
            allow_agent=False, look_for_keys=False,
        )
    except paramiko.BadHostKeyException as exc:
        close_client(client)
        raise HostKeyChanged(
            f"the SSH host key of {address}:{port} changed: pinned {fingerprint(exc.expected_key)}, "
            f"offered {fingerprint(exc.key)}; refusing to connect (if the server was reinstalled, "
            "forget the pinned key and try again)",
            {"pinned": [fingerprint(exc.expected_key)], "offered": [fingerprint(exc.key)]},
        ) from None
    except paramiko.AuthenticationException:
        close_client(client)
        method = "key" if private_key else "password"
        raise SshFailed(f"SSH authentication failed for {user}@{address}:{port}: the {method} was rejected") from None
    except (socket.timeout, TimeoutError):
        close_client(client)
        raise SshFailed(f"SSH connection to {address}:{port} timed out after {timeout:.0f} s") from None
    except (paramiko.SSHException, OSError) as exc:
        close_client(client)
        raise SshFailed(f"cannot open SSH to {address}:{port}: {exc}") from None
    host_key = client.get_transport().get_remote_server_key()
    return Connection(client, user, host_key)


def quote(value):
    return shlex.quote(str(value))

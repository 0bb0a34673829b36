"""SSH to a managed server with paramiko, refusing a host key other than the pinned one."""
import base64
import hashlib
import io

import paramiko


class HostKeyMismatch(Exception):
    pass


def fingerprint(key):
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class SSHShell:
    """One SSH connection: ``run(command) -> (status, output)`` and ``put(local, remote)``."""

    def __init__(self, client):
        self.client = client

    @classmethod
    def connect(cls, credentials, pinned_key=None, timeout=15.0):
        """``pinned_key`` is {"key_type", "key_base64"} from the provisioner; None accepts what the server shows."""
        client = paramiko.SSHClient()
        if pinned_key:
            # Checked before authenticating: a password never reaches a host that is not the pinned one.
            host = credentials["address"] if credentials["port"] == 22 else f"[{credentials['address']}]:{credentials['port']}"
            client.get_host_keys().add(host, pinned_key["key_type"], paramiko.PKey.from_type_string(
                pinned_key["key_type"], base64.b64decode(pinned_key["key_base64"])))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        key = None
        if credentials.get("private_key"):
            key = _load_key(credentials["private_key"])
        try:
            client.connect(
                credentials["address"], port=credentials["port"], username=credentials["user"],
                password=credentials.get("password"), pkey=key, timeout=timeout, banner_timeout=timeout,
                auth_timeout=timeout, allow_agent=False, look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyMismatch(
                f"the host key of {credentials['address']} changed (now {fingerprint(exc.key)}); "
                "if that is expected, forget the pinned key and install again"
            ) from None
        return cls(client)

    def run(self, command, timeout=300):
        stdin, stdout, _ = self.client.exec_command(command, timeout=timeout, get_pty=False)
        stdin.close()
        stdout.channel.set_combined_stderr(True)
        output = stdout.read().decode("utf-8", "replace")
        return stdout.channel.recv_exit_status(), output

    def put(self, local, remote):
        with self.client.open_sftp() as sftp:
            sftp.put(local, remote)

    def close(self):
        self.client.close()


def _load_key(text):
    for kind in (paramiko.Ed25519Key, paramiko.RSAKey, paramiko.ECDSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise paramiko.SSHException("the private key is not in a format paramiko reads (ed25519, RSA, ECDSA)")

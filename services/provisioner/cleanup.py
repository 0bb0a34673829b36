"""Removing a server: stop its components and remove the agent over SSH when it can,
drop its RabbitMQ user and pinned host key, and say what could not be done."""
from sqlalchemy import select

from services.provisioner.models import Task
from shared import ssh
from shared.errors import SshFailed, StewardError


class Cleanup:
    def __init__(self, session_factory, host_keys, inventory, users_for, secret_box, connect=ssh.connect):
        self.Session = session_factory
        self.secret_box = secret_box  # opens the SSH credentials inventory hands over sealed
        self.host_keys = host_keys
        self.inventory = inventory
        self.users_for = users_for  # () -> RabbitMQUsers for the agents' broker
        self.connect = connect

    def _ever_installed(self, server_id):
        with self.Session() as session:
            return session.scalar(select(Task.id).where(Task.server_id == server_id, Task.kind == "install")
                                  .limit(1)) is not None

    def remove(self, server_id, reported_installed=False):
        """Before inventory deletes the server: uninstall over SSH if anything was installed (by a push install,
        or by hand: ``reported_installed``, the server sent heartbeats or reported components)."""
        report = {"server_id": server_id, "uninstalled": False, "rabbitmq_user_removed": False, "problems": []}
        report["nothing_installed"] = (not reported_installed and not self._ever_installed(server_id)
                                       and self.host_keys.pinned(server_id) is None)
        if not report["nothing_installed"]:
            try:
                self._uninstall(server_id)
                report["uninstalled"] = True
            except StewardError as exc:
                report["problems"].append(f"could not remove the agent and components: {exc}")
        # Also when nothing was installed: a downloaded bundle made the user too.
        try:
            report["rabbitmq_user_removed"] = self.forget(server_id)
        except StewardError as exc:
            report["problems"].append(f"could not remove the RabbitMQ user: {exc}")
        return report

    def forget(self, server_id):
        """Drop what the control plane keeps for a server outside inventory: its RabbitMQ user (RabbitMQ
        closes the agent's connections with it) and its pinned host key. Idempotent; True if a user went."""
        removed = self.users_for().delete_agent_user(server_id)
        self.host_keys.forget(server_id)
        return removed

    def _uninstall(self, server_id):
        credentials = ssh.open_credentials(self.secret_box, self.inventory.server_credentials(server_id))
        connection = self.connect(credentials["address"], credentials["port"], credentials["user"],
                                  password=credentials["password"], private_key=credentials["private_key"],
                                  pinned=self.host_keys.pinned(server_id))
        try:
            status, prefix = connection.run('printf "%s" "${STEWARD_PREFIX:-/}"')
            installed = f"{prefix.rstrip('/')}/opt/steward/pv_install.py"
            status, output = connection.run(connection.as_root(
                f"sh -c 'test ! -e {ssh.quote(installed)} || python3 {ssh.quote(installed)} "
                f"--prefix {ssh.quote(prefix)} --uninstall'", ["uninstall"]))
            if status:
                raise SshFailed(f"uninstall exited with {status}: {output.strip()[-500:]}")
        finally:
            connection.close()

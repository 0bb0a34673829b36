"""Removing a server: stop its components and remove the agent over SSH when it can,
drop its RabbitMQ user and pinned host key, and say what could not be done."""
from sqlalchemy import select

from services.provisioner import ssh
from services.provisioner.models import Task
from shared.errors import StewardError


class Cleanup:
    def __init__(self, session_factory, host_keys, inventory, users_for, connect=ssh.connect):
        self.Session = session_factory
        self.host_keys = host_keys
        self.inventory = inventory
        self.users_for = users_for  # () -> RabbitMQUsers for the agents' broker
        self.connect = connect

    def _ever_installed(self, server_id):
        with self.Session() as session:
            return session.scalar(select(Task.id).where(Task.server_id == server_id, Task.kind == "install")
                                  .limit(1)) is not None

    def remove(self, server_id):
        report = {"server_id": server_id, "uninstalled": False, "rabbitmq_user_removed": False, "problems": []}
        report["nothing_installed"] = not self._ever_installed(server_id) and self.host_keys.pinned(server_id) is None
        if report["nothing_installed"]:
            return report
        try:
            self._uninstall(server_id)
            report["uninstalled"] = True
        except StewardError as exc:
            report["problems"].append(f"could not remove the agent and components: {exc}")
        try:
            report["rabbitmq_user_removed"] = self.users_for().delete_agent_user(server_id)
        except StewardError as exc:
            report["problems"].append(f"could not remove the RabbitMQ user: {exc}")
        self.host_keys.forget(server_id)
        return report

    def _uninstall(self, server_id):
        credentials = self.inventory.server_credentials(server_id)
        connection = self.connect(credentials["address"], credentials["port"], credentials["user"],
                                  password=credentials["password"], private_key=credentials["private_key"],
                                  pinned=self.host_keys.pinned(server_id))
        try:
            status, prefix = connection.run('printf "%s" "${STEWARD_PREFIX:-/}"')
            installed = f"{prefix.rstrip('/')}/opt/steward/pv_install.py"
            status, output = connection.run(
                f"sh -c 'test ! -e {ssh.quote(installed)} || python3 {ssh.quote(installed)} "
                f"--prefix {ssh.quote(prefix)} --uninstall'", root=True)
            if status:
                raise ssh.SshFailed(f"uninstall exited with {status}: {output.strip()[-500:]}")
        finally:
            connection.close()

"""Reaching a managed server: its SSH credentials (inventory), pinned host key and install prefix (provisioner)."""
from services.updater.remote import ComponentHost
from services.updater.ssh import SSHShell


class Hosts:
    def __init__(self, inventory, provisioner, options):
        self.inventory = inventory
        self.provisioner = provisioner
        self.options = options

    def target(self, server_id):
        credentials = self.inventory.server_credentials(server_id)
        installed = self.provisioner.ssh_target(server_id)
        return {
            "credentials": credentials,
            "pinned_key": installed.get("host_key"),
            "prefix": installed.get("prefix") or self.options.get("install_prefix", "/"),
            "sudo": credentials["user"] != "root",
        }

    def connect(self, server_id, target=None):
        target = target or self.target(server_id)
        return SSHShell.connect(target["credentials"], target["pinned_key"],
                                timeout=float(self.options.get("ssh_timeout_seconds", 15)))

    def open(self, server_id):
        target = self.target(server_id)
        return ComponentHost(self.connect(server_id, target), target["prefix"], target["sudo"])

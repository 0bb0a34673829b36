"""Reaching a managed server: SSH credentials from inventory, the host key the provisioner pinned,
and the provisioner's SSH client (one implementation of connecting and refusing a changed key)."""
from services.provisioner.ssh import connect
from services.updater.remote import ComponentHost


class Hosts:
    def __init__(self, inventory, pinned_host_key, options):
        self.inventory = inventory
        self.pinned_host_key = pinned_host_key
        self.timeout = float(options.get("ssh_timeout_seconds", 15))

    def connect(self, server_id):
        credentials = self.inventory.server_credentials(server_id)
        pinned = self.pinned_host_key(server_id)
        return connect(credentials["address"], credentials["port"], credentials["user"],
                       password=credentials.get("password"), private_key=credentials.get("private_key"),
                       pinned=tuple(pinned) if pinned else None, timeout=self.timeout)

    def open(self, server_id):
        return ComponentHost(self.connect(server_id))

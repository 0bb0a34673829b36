"""Reaching a managed server: SSH credentials from inventory, the host key the provisioner pinned,
and the SSH client in shared/ssh.py (one implementation of connecting and refusing a changed key)."""
from services.updater.remote import ComponentHost
from shared.ssh import connect, open_credentials


class Hosts:
    def __init__(self, inventory, pinned_host_key, options, secret_box):
        self.inventory = inventory
        self.secret_box = secret_box  # opens the SSH credentials inventory hands over sealed
        self.pinned_host_key = pinned_host_key
        self.timeout = float(options.get("ssh_timeout_seconds", 15))

    def connect(self, server_id):
        credentials = open_credentials(self.secret_box, self.inventory.server_credentials(server_id))
        pinned = self.pinned_host_key(server_id)
        return connect(credentials["address"], credentials["port"], credentials["user"],
                       password=credentials.get("password"), private_key=credentials.get("private_key"),
                       pinned=tuple(pinned) if pinned else None, timeout=self.timeout)

    def open(self, server_id):
        return ComponentHost(self.connect(server_id), reconnect=lambda: self.connect(server_id))

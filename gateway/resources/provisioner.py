"""Setup bundles, push installs, pinned host keys, and server removal with cleanup on the server."""
import base64

import falcon

from gateway.resources import json_body, principal
from gateway.resources.servers import ServerItem
from shared.errors import ServiceUnavailable


class PushInstall:
    def __init__(self, provisioner):
        self.provisioner = provisioner

    def on_post(self, req, resp, server_id):
        task = self.provisioner.push_install(principal(req), server_id, json_body(req))
        resp.media = task
        resp.status = falcon.HTTP_202
        resp.location = f"/api/v2/tasks/{task['id']}"


class Bundle:
    def __init__(self, provisioner):
        self.provisioner = provisioner

    def on_get(self, req, resp, server_id):
        bundle = self.provisioner.bundle(principal(req), server_id)
        resp.content_type = "application/x-tar"
        resp.downloadable_as = bundle["filename"]
        resp.set_header("X-Content-SHA256", bundle["sha256"])
        resp.data = base64.b64decode(bundle["content"])


class HostKey:
    def __init__(self, provisioner):
        self.provisioner = provisioner

    def on_delete(self, req, resp, server_id):
        resp.media = self.provisioner.forget_host_key(principal(req), server_id)


class ServerItemWithCleanup(ServerItem):
    """DELETE first removes what Steward installed on the server (best effort), then the record.

    204 when there was nothing to remove from the server; otherwise 200 with what
    was removed and what could not be (the record is deleted either way).
    """

    def __init__(self, inventory, provisioner, monitoring=None):
        super().__init__(inventory, monitoring)
        self.provisioner = provisioner

    def on_delete(self, req, resp, server_id):
        try:
            cleanup = self.provisioner.cleanup_server(principal(req), server_id)
        except ServiceUnavailable as exc:
            cleanup = {"server_id": server_id, "uninstalled": False, "rabbitmq_user_removed": False,
                       "nothing_installed": False, "problems": [f"cleanup on the server skipped: {exc.message}"]}
        deleted = self.inventory.delete_server(principal(req), server_id)
        if cleanup.pop("nothing_installed", False):
            resp.status = falcon.HTTP_204
            return
        resp.media = {"deleted": deleted, "cleanup": cleanup}

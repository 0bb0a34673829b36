"""Setup bundles, push installs and pinned host keys (the provisioner owns them)."""
import base64

from gateway.resources import json_body, principal
from shared.crypto import SETUP_BUNDLE


class PushInstall:
    def __init__(self, provisioner):
        self.provisioner = provisioner

    def on_post(self, req, resp, server_id):
        resp.media = self.provisioner.push_install(principal(req), server_id, json_body(req))


class Bundle:
    def __init__(self, provisioner, secret_box):
        self.provisioner = provisioner
        self.secret_box = secret_box

    def on_get(self, req, resp, server_id):
        bundle = self.provisioner.bundle(principal(req), server_id)
        resp.content_type = "application/x-tar"
        resp.downloadable_as = bundle["filename"]
        resp.set_header("X-Content-SHA256", bundle["sha256"])
        resp.data = base64.b64decode(self.secret_box.open_sealed(SETUP_BUNDLE, bundle["content"]))


class HostKey:
    def __init__(self, provisioner):
        self.provisioner = provisioner

    def on_delete(self, req, resp, server_id):
        resp.media = self.provisioner.forget_host_key(principal(req), server_id)


class ServerInspection:
    def __init__(self, provisioner):
        self.provisioner = provisioner

    def on_get(self, req, resp, server_id):
        resp.media = self.provisioner.inspect_server(principal(req), server_id)


class Reconcile:
    """GET lists every disagreement across the fleet; POST fixes the safe ones and says what it did."""

    def __init__(self, provisioner):
        self.provisioner = provisioner

    def on_get(self, req, resp):
        resp.media = self.provisioner.reconcile(principal(req))

    def on_post(self, req, resp):
        resp.media = self.provisioner.reconcile(principal(req), fix=True)

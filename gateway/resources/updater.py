"""Version catalog, push update, update tasks, rollouts and diagnostics: thin resources over the updater's RPC.

An image upload is the one body that does not travel through RPC: it is
streamed from the socket to a file in the shared storage directory (never held
whole in memory), counted and hashed on the way, and the updater is handed its
name (see shared/schemas/updater.py).
"""
import hashlib
import os
import uuid

import falcon

from gateway.resources import json_body, principal
from shared.authz import require_role
from shared.errors import ValidationFailed
from shared.schemas.updater import INCOMING_DIR

CHUNK = 1 << 16


class ImageSpool:
    """Writes an upload stream to ``<storage>/incoming/<random>.upload`` with its sha256 and size."""

    def __init__(self, storage_dir, max_bytes):
        self.directory = os.path.join(str(storage_dir), INCOMING_DIR)
        self.max_bytes = max_bytes

    def receive(self, stream, length):
        if length is None:
            raise falcon.HTTPLengthRequired(description="send the image with a Content-Length")
        if length > self.max_bytes:
            raise falcon.HTTPPayloadTooLarge(description=f"an image may be at most {self.max_bytes} bytes")
        if length == 0:
            raise ValidationFailed("the image is empty", {"image": ["the request body is empty"]})
        os.makedirs(self.directory, exist_ok=True)
        name = f"{uuid.uuid4().hex}.upload"
        path = os.path.join(self.directory, name)
        digest, size = hashlib.sha256(), 0
        try:
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
                while chunk := stream.read(min(CHUNK, length - size)):
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if size >= length:
                        break
            if size != length:
                raise ValidationFailed(f"the upload ended after {size} of {length} bytes",
                                       {"image": ["truncated upload; send it again"]})
        except BaseException:
            os.unlink(path)
            raise
        return {"upload": name, "sha256": digest.hexdigest(), "size_bytes": size}, path


def discard(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class VersionCollection:
    def __init__(self, updater, image_spool):
        self.updater = updater
        self.spool = image_spool

    def on_get(self, req, resp):
        resp.media = self.updater.list_versions(principal(req), dict(req.params))

    def on_post(self, req, resp):
        # Checked here too, so an upload nobody but an admin may make is refused before it fills the disk.
        require_role(principal(req), "admin")
        upload, path = self.spool.receive(req.bounded_stream, req.content_length)
        if req.get_param("component"):
            upload["component"] = req.get_param("component")
        try:
            resp.media = self.updater.add_image(principal(req), upload)
        finally:
            discard(path)  # the updater moved it into the catalog, or refused it


class PushUpdate:
    def __init__(self, updater):
        self.updater = updater

    def on_post(self, req, resp, server_id):
        # The updater applies the server-user rule, which lets this server's own agent in too (shared/authz.py).
        resp.media = self.updater.push_update(principal(req), server_id, json_body(req))


class ServerUpdateTasks:
    def __init__(self, updater):
        self.updater = updater

    def on_get(self, req, resp, server_id):
        resp.media = self.updater.server_update_tasks(principal(req), server_id)


class UpdateTaskItem:
    def __init__(self, updater):
        self.updater = updater

    def on_get(self, req, resp, task_id):
        resp.media = self.updater.get_update_task(principal(req), task_id)


class UpdateTaskLog:
    def __init__(self, updater):
        self.updater = updater

    def on_get(self, req, resp, task_id):
        resp.text = self.updater.get_update_task_log(principal(req), task_id)
        resp.content_type = "text/plain; charset=utf-8"
        resp.downloadable_as = f"update-{task_id}.log"


class RolloutCollection:
    def __init__(self, updater):
        self.updater = updater

    def on_get(self, req, resp):
        resp.media = self.updater.list_rollouts(principal(req))

    def on_post(self, req, resp):
        resp.media = self.updater.create_rollout(principal(req), json_body(req))


class RolloutItem:
    def __init__(self, updater):
        self.updater = updater

    def on_get(self, req, resp, rollout_id):
        resp.media = self.updater.get_rollout(principal(req), rollout_id)


class RolloutResume:
    def __init__(self, updater):
        self.updater = updater

    def on_post(self, req, resp, rollout_id):
        resp.media = self.updater.resume_rollout(principal(req), rollout_id)


class RolloutCancel:
    def __init__(self, updater):
        self.updater = updater

    def on_post(self, req, resp, rollout_id):
        resp.media = self.updater.cancel_rollout(principal(req), rollout_id)


class Diagnostics:
    def __init__(self, updater):
        self.updater = updater

    def on_post(self, req, resp, server_id):
        resp.media = self.updater.run_diagnostics(principal(req), server_id)


class DiagnosticsCollection:
    def __init__(self, updater):
        self.updater = updater

    def on_get(self, req, resp, server_id):
        resp.media = self.updater.list_diagnostics(principal(req), server_id)


class DiagnosticsItem:
    def __init__(self, updater):
        self.updater = updater

    def on_get(self, req, resp, server_id, run_id):
        resp.media = self.updater.get_diagnostics(principal(req), server_id, run_id)


class DiagnosticsLog:
    def __init__(self, updater):
        self.updater = updater

    def on_get(self, req, resp, server_id, run_id):
        resp.text = self.updater.get_diagnostics_log(principal(req), server_id, run_id)
        resp.content_type = "text/plain; charset=utf-8"
        resp.downloadable_as = f"diagnostics-{run_id}.log"

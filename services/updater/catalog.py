"""The version catalog: images per component, uploaded (local mode) or from the registry (internet mode).

An image is accepted whole or not at all: it is checked end to end, moved into
``<storage>/images/<component>/`` with an atomic rename, and its row is
committed (an upload's by its request, with its answer: shared/idempotency.py);
if the transaction rolls back instead the file is removed again, and a refused
upload leaves nothing behind.
"""
import os
import re
import tempfile
import uuid

from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.updater.images import read_image, sha256_of
from services.updater.models import Image
from services.updater.versions import version_key
from shared.components import INSTALLABLE
from shared.errors import Conflict, InvalidImage, ValidationFailed, VersionNotFound
from shared.schemas.updater import INCOMING_DIR, UPLOAD_NAME


def image_dict(image):
    return {
        "component": image.component,
        "version": image.version,
        "sha256": image.sha256,
        "size_bytes": image.size_bytes,
        "source": image.source,
        "description": (image.manifest or {}).get("description"),
        "stored": True,
        "created_at": image.created_at,
    }


class Catalog:
    def __init__(self, session, storage_dir, registry=None):
        self.session = session
        self.storage = str(storage_dir)
        self.registry = registry

    def incoming_path(self, name):
        if not re.match(UPLOAD_NAME, name or ""):
            raise ValidationFailed("not an upload name", {"upload": ["not an upload name"]})
        return os.path.join(self.storage, INCOMING_DIR, name)

    def path_of(self, image):
        return os.path.join(self.storage, image.path)

    # -- adding images ----------------------------------------------------------

    def discard_upload(self, upload):
        """Delete a streamed upload that is not taken in (a repeat answered with its first answer, a refusal)."""
        path = self.incoming_path(upload["upload"])
        if os.path.exists(path):
            os.unlink(path)

    def add_upload(self, upload, uploaded_by):
        """Take a streamed upload from the incoming directory into the catalog (or delete it), in the session's
        transaction: the caller commits (with the request's answer), and a rollback removes the image file."""
        path = self.incoming_path(upload["upload"])
        try:
            if not os.path.isfile(path):
                raise InvalidImage("the upload is gone; send it again", {"image": ["upload not found"]})
            size = os.path.getsize(path)
            digest = sha256_of(path)
            if size != upload["size_bytes"] or digest != upload["sha256"]:
                raise InvalidImage("the upload was damaged on its way: size or checksum differ",
                                   {"image": ["size or checksum differ from what the gateway received"]})
            manifest = read_image(path)
            if upload.get("component") and manifest["component"] != upload["component"]:
                raise InvalidImage(
                    f"this is a {manifest['component']} image, not {upload['component']}",
                    {"component": [f"the manifest names {manifest['component']}"]},
                )
            return self._store(path, manifest, digest, size, "upload", uploaded_by, commit=False)
        finally:
            self.discard_upload(upload)

    def _store(self, path, manifest, digest, size, source, uploaded_by, commit=True):
        component, version = manifest["component"], manifest["version"]
        relative = os.path.join("images", component, f"{version}-{digest[:12]}.tar.gz")
        image = Image(component=component, version=version, sha256=digest, size_bytes=size, source=source,
                      path=relative, manifest=manifest, uploaded_by=uploaded_by)
        self.session.add(image)
        try:
            self.session.flush()
        except IntegrityError:
            self.session.rollback()
            raise Conflict(f"{component} {version} is already in the catalog",
                           {"version": [f"{component} {version} exists; give the new image another version"]}) from None
        final = os.path.join(self.storage, relative)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.rename(path, final)
        if not commit:
            _unlink_unless_committed(self.session, final)
            return image
        try:
            self.session.commit()
        except BaseException:
            os.unlink(final)
            raise
        return image

    # -- reading the catalog ----------------------------------------------------

    def stored(self, component=None):
        query = select(Image)
        if component:
            query = query.where(Image.component == component)
        images = self.session.scalars(query).all()
        return sorted(images, key=lambda i: (i.component, version_key(i.version)))

    def versions(self, mode, component=None):
        """What can be installed: stored images, and in internet mode what the registry offers."""
        rows = {(i.component, i.version): image_dict(i) for i in self.stored(component)}
        if mode == "internet":
            for name in [component] if component else INSTALLABLE:
                for offered in self.registry.versions(name):
                    rows.setdefault((name, offered["version"]), dict(
                        offered, component=name, source="registry", stored=False, created_at=None))
        return sorted(rows.values(), key=lambda r: (r["component"], version_key(r["version"])))

    def newest_version(self, mode, component, as_of=None):
        """The newest version; ``as_of``: of those stored by then (and any the registry offers now)."""
        candidates = [r["version"] for r in self.versions(mode, component)
                      if as_of is None or r["created_at"] is None or r["created_at"] <= as_of]
        return max(candidates, key=version_key) if candidates else None

    def image(self, mode, component, version):
        """The stored image of a version, fetching it from the registry first in internet mode."""
        image = self.session.scalars(
            select(Image).where(Image.component == component, Image.version == version)
        ).one_or_none()
        if image is not None:
            return image
        if mode != "internet":
            raise VersionNotFound(f"no {component} version {version} in the catalog; upload it first")
        offered = {v["version"]: v for v in self.registry.versions(component)}
        if version not in offered:
            raise VersionNotFound(f"the registry offers no {component} version {version}")
        return self._fetch(component, offered[version])

    def _fetch(self, component, offered):
        if not offered.get("sha256"):  # an image nobody can check is not installed anywhere
            raise InvalidImage(f"the registry gives no sha256 for {component} {offered['version']}: "
                               "refusing an image that cannot be checked")
        incoming = os.path.join(self.storage, INCOMING_DIR)
        os.makedirs(incoming, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=incoming, prefix=uuid.uuid4().hex, suffix=".fetch", delete=False)
        try:
            with handle:
                size = self.registry.download(component, offered["version"], handle)
            digest = sha256_of(handle.name)
            if digest != offered["sha256"]:
                raise InvalidImage(f"the registry's {component} {offered['version']} image does not match its checksum")
            manifest = read_image(handle.name)
            if (manifest["component"], manifest["version"]) != (component, offered["version"]):
                raise InvalidImage(f"the registry's image for {component} {offered['version']} says "
                                   f"{manifest['component']} {manifest['version']}")
            return self._store(handle.name, manifest, digest, size, "registry", None)
        finally:
            if os.path.exists(handle.name):
                os.unlink(handle.name)


def _unlink_unless_committed(session, path):
    """Removes ``path`` if ``session``'s transaction rolls back rather than commits."""
    decided = []

    def committed(_session):
        decided.append("commit")

    def rolled_back(_session):
        if not decided:
            decided.append("rollback")
            if os.path.exists(path):
                os.unlink(path)

    sqlalchemy_event.listen(session, "after_commit", committed, once=True)
    sqlalchemy_event.listen(session, "after_rollback", rolled_back, once=True)

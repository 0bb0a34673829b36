"""restic repositories on disk, in the layout of restic's own REST server.

    <root>/<repository>/config
    <root>/<repository>/{keys,locks,snapshots,index}/<id>
    <root>/<repository>/data/<first two hex digits>/<id>

restic names every object but ``config`` by the SHA-256 of its (encrypted) content,
which is what lets this daemon check every stored object without any key.
"""
import hashlib
import os
import re
import tempfile

TYPES = ("data", "keys", "locks", "snapshots", "index")
NAME = re.compile(r"^[0-9a-f]{64}$")
REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CHUNK = 1 << 20


class NotFound(Exception):
    pass


class Refused(Exception):
    """What the caller's role may not do (HTTP 403), or an object whose content is not its name (400)."""

    def __init__(self, message, status=403):
        super().__init__(message)
        self.status = status


class InsufficientStorage(Exception):
    pass


class Repositories:
    def __init__(self, root, reserve_bytes=0):
        self.root = root
        self.reserve_bytes = reserve_bytes
        os.makedirs(root, mode=0o700, exist_ok=True)

    def names(self):
        return sorted(n for n in os.listdir(self.root) if REPOSITORY.match(n) and os.path.exists(self._config(n)))

    def path(self, repository, kind=None, name=None):
        if not REPOSITORY.match(repository):
            raise NotFound(repository)
        parts = [self.root, repository]
        if kind is not None:
            if kind not in TYPES:
                raise NotFound(kind)
            parts.append(kind)
            if name is not None:
                if not NAME.match(name):
                    raise NotFound(name)
                if kind == "data":
                    parts.append(name[:2])
                parts.append(name)
        return os.path.join(*parts)

    def _config(self, repository):
        return os.path.join(self.root, repository, "config")

    def create(self, repository):
        base = self.path(repository)
        for kind in TYPES:
            os.makedirs(os.path.join(base, kind), mode=0o700, exist_ok=True)
        for prefix in range(256):
            os.makedirs(os.path.join(base, "data", "%02x" % prefix), mode=0o700, exist_ok=True)

    def object_path(self, repository, kind, name):
        if kind == "config":
            return self._config(repository)
        return self.path(repository, kind, name)

    def list(self, repository, kind):
        base = self.path(repository, kind)
        if not os.path.isdir(base):
            raise NotFound(repository)
        if kind == "data":
            directories = [os.path.join(base, d) for d in sorted(os.listdir(base))]
        else:
            directories = [base]
        found = []
        for directory in directories:
            for name in sorted(os.listdir(directory)):
                if NAME.match(name):
                    found.append({"name": name, "size": os.path.getsize(os.path.join(directory, name))})
        return found

    def admit(self, repository, kind, name, length):
        """Refuse an upload before its body is read: unknown repository, existing object, no room."""
        target = self.object_path(repository, kind, name)
        if not os.path.isdir(os.path.dirname(target)):
            raise NotFound(repository)
        if os.path.exists(target):
            raise Refused("%s/%s exists: objects are never overwritten" % (kind, name))
        if self.free_bytes() - length < self.reserve_bytes:
            raise InsufficientStorage("%d bytes do not fit: %d free, %d kept in reserve"
                                      % (length, self.free_bytes(), self.reserve_bytes))
        return target

    def save(self, target, kind, name, body, length):
        """Store an object read from ``body`` (after ``admit``); checks the content against the name."""
        digest = hashlib.sha256()
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                remaining = length
                while remaining > 0:
                    chunk = body.read(min(CHUNK, remaining))
                    if not chunk:
                        raise Refused("the upload ended after %d of %d bytes" % (length - remaining, length), 400)
                    digest.update(chunk)
                    out.write(chunk)
                    remaining -= len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if kind != "config" and digest.hexdigest() != name:
                raise Refused("the content of %s/%s does not match its name" % (kind, name), 400)
            os.link(temporary, target)  # fails, rather than replaces, if another upload won the race
        except FileExistsError:
            raise Refused("%s/%s exists: objects are never overwritten" % (kind, name)) from None
        finally:
            os.unlink(temporary)

    def delete(self, repository, kind, name, role):
        # The append-only user removes only its own locks (restic unlocks after every command).
        if role != "prune" and kind != "locks":
            raise Refused("the %s user may not delete %s" % (role, kind))
        target = self.object_path(repository, kind, name)
        try:
            os.unlink(target)
        except FileNotFoundError:
            raise NotFound(name) from None

    def check(self, repository):
        """Read every object and compare its SHA-256 with its name: {objects, bytes, corrupt: [kind/name]}."""
        objects = size = 0
        corrupt = []
        for kind in ("keys", "snapshots", "index", "data"):
            for item in self.list(repository, kind):
                digest = hashlib.sha256()
                with open(self.path(repository, kind, item["name"]), "rb") as f:
                    for chunk in iter(lambda: f.read(CHUNK), b""):
                        digest.update(chunk)
                objects += 1
                size += item["size"]
                if digest.hexdigest() != item["name"]:
                    corrupt.append("%s/%s" % (kind, item["name"]))
        return {"objects": objects, "bytes": size, "corrupt": corrupt}

    def usage(self):
        stat = os.statvfs(self.root)
        return stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize

    def free_bytes(self):
        return self.usage()[1]

"""Images (process runtime): the file an operator uploads or the registry serves, checked end to end.

An image is a gzip'd tar file with ``manifest.json`` (``{"format": 1, "component": "dns",
"version": "3.3", "description": "..."}``) and a ``files/`` tree of regular files and
directories only, no absolute paths, no "..", no links (README, "Images"). The updater
accepts one into its catalog only after reading every member to its end, so a truncated
or corrupt file is refused on upload, not halfway through an update.

The managed server checks the image again before unpacking it, with pv_update.py's own
reader (the agent's scripts ship alone in the bundle and cannot import this one);
tests/unit/test_images.py gives both readers the same images and requires the same verdicts.
"""
import gzip
import hashlib
import json
import tarfile
import zlib

from marshmallow import ValidationError

from services.updater.schemas import MANIFEST_PROBLEMS, ImageManifest
from shared.errors import InvalidImage

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024
MAX_MEMBERS = 2000
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
# The file a component's image must hold, if any (the release's own check on the server needs it).
REQUIRED_FILES = {"dns": "files/knot/zones/pvverify.test.zone", "dhcp": "files/kea/subnet4.json"}
CHUNK = 1 << 20


def refused(reason):
    return InvalidImage(f"not a valid image: {reason}", {"image": [reason]})


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# What no member of an image may be: (the test, why).
_REFUSED_MEMBERS = (
    (lambda m: m.name.startswith("/") or ".." in m.name.split("/"), "absolute paths and '..' are not allowed"),
    (lambda m: not (m.isfile() or m.isdir()), "only regular files and directories are allowed"),
    (lambda m: m.name not in (MANIFEST, "files") and not m.name.startswith("files/"),
     "everything but manifest.json must be under files/"),
)


def _members(path):
    """(names, raw manifest) after reading the whole file; raises InvalidImage."""
    # The whole gzip stream first: its end marker and CRC show a file cut short anywhere.
    with gzip.open(path, "rb") as stream:
        while stream.read(CHUNK):
            pass
    names, manifest, unpacked = set(), None, 0
    with tarfile.open(path, mode="r:gz") as archive:
        for member in archive:
            if len(names) == MAX_MEMBERS:
                raise refused(f"more than {MAX_MEMBERS} files")
            for test, why in _REFUSED_MEMBERS:
                if test(member):
                    raise refused(f"{member.name}: {why}")
            unpacked += member.size
            if unpacked > MAX_UNPACKED_BYTES:
                raise refused(f"unpacks to more than {MAX_UNPACKED_BYTES} bytes")
            names.add(member.name.rstrip("/"))
            if member.name == MANIFEST and member.isfile():
                if member.size > MAX_MANIFEST_BYTES:
                    raise refused("manifest.json is too large")
                manifest = archive.extractfile(member).read()
            elif member.isfile():
                content = archive.extractfile(member)
                while content.read(CHUNK):
                    pass
    return names, manifest


def read_image(path):
    """Check an image file end to end and return its manifest; raises InvalidImage."""
    try:
        names, raw = _members(path)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise refused(f"not a complete gzip'd tar file ({exc})") from None
    if raw is None:
        raise refused("manifest.json is missing")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise refused("manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise refused("manifest.json must be a JSON object")
    try:
        ImageManifest().load(manifest)
    except ValidationError as exc:
        first = next(name for name in MANIFEST_PROBLEMS if name in exc.messages)  # in pv_update.py's order
        raise refused(f"manifest.json: {MANIFEST_PROBLEMS[first]}") from None
    required = REQUIRED_FILES.get(manifest["component"])
    if required and required not in names:
        raise refused(f"a {manifest['component']} image must hold {required}")
    return manifest

"""Two readers check an image: the updater's on upload (services/updater/images.py) and
pv_update.py's on the server before it unpacks (the agent ships alone and cannot import
the control plane's). Given the same files they must give the same verdict, so that the
updater never accepts an image the server will refuse."""
import io
import tarfile

import pytest

from agent.provision import pv_update
from services.updater import images
from services.updater.schemas import IMAGE_FORMAT
from shared.errors import InvalidImage
from shared.schemas.updater import VERSION
from tests.updater.images import dhcp_image, dns_image, image_bytes

ZONE = {"files/knot/zones/pvverify.test.zone": "x"}


def _tar(*members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/shadow"
            archive.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


def _manifest(**fields):
    return image_bytes("dns", "2", ZONE, manifest=dict({"format": 1, "component": "dns", "version": "2"}, **fields))


IMAGES = {
    "dns": dns_image("2"),
    "dhcp": dhcp_image("3.2.6-1"),
    "monitor": image_bytes("monitor", "1.1", {"files/agent/x.py": "x"}),
    "extra manifest keys": _manifest(notes="kept"),
    "truncated": dns_image("2")[:300],
    "not gzip": b"just some text, not an image",
    "unknown component": _manifest(component="web"),
    "backup is not updated": _manifest(component="backup"),
    "version with ..": _manifest(version="../2"),
    "version not a string": _manifest(version=2),
    "format 2": _manifest(format=2),
    "no format": image_bytes("dns", "2", ZONE, manifest={"component": "dns", "version": "2"}),
    "manifest a list": image_bytes("dns", "2", ZONE, manifest=[]),
    "manifest not JSON": image_bytes("dns", "2", dict(ZONE, **{"manifest.json": "{"})),
    "no pvverify zone": image_bytes("dns", "2", {"files/knot/zones/other.zone": "x"}),
    "no subnets": image_bytes("dhcp", "2", {"files/kea/other.json": "[]"}),
    "no manifest": _tar(("files/x", tarfile.REGTYPE)),
    "..": _tar(("../etc/passwd", tarfile.REGTYPE)),
    "absolute": _tar(("/etc/passwd", tarfile.REGTYPE)),
    "link": _tar(("files/link", tarfile.SYMTYPE)),
    "outside files/": _tar(("other/x", tarfile.REGTYPE)),
}


def _agent_verdict(path):
    try:
        return "accepted", pv_update.read_image(path)
    except pv_update.ImageError as exc:
        return "refused", str(exc)


def _updater_verdict(path):
    try:
        return "accepted", images.read_image(path)
    except InvalidImage as exc:
        return "refused", exc.details["image"][0]


@pytest.mark.parametrize("name", IMAGES)
def test_the_updater_and_the_server_give_the_same_verdict(tmp_path, name):
    path = tmp_path / "image.tar.gz"
    path.write_bytes(IMAGES[name])
    updater, agent = _updater_verdict(str(path)), _agent_verdict(str(path))
    assert updater[0] == agent[0]
    if updater[0] == "accepted":
        assert updater[1] == agent[1]
    else:  # the same reason, apart from what the archive library says about a broken file
        assert updater[1].split(" (")[0] == agent[1].split(" (")[0]


def test_good_images_are_accepted_and_bad_ones_refused(tmp_path):
    verdicts = {}
    for name, data in IMAGES.items():
        path = tmp_path / f"{len(verdicts)}.tar.gz"
        path.write_bytes(data)
        verdicts[name] = _updater_verdict(str(path))[0]
    assert {n for n, v in verdicts.items() if v == "accepted"} == {"dns", "dhcp", "monitor", "extra manifest keys"}


def test_the_format_constants_agree():
    assert IMAGE_FORMAT == pv_update.IMAGE_FORMAT
    assert images.MAX_MEMBERS == pv_update.MAX_MEMBERS
    assert images.MAX_UNPACKED_BYTES == pv_update.MAX_UNPACKED_BYTES
    assert images.MAX_MANIFEST_BYTES == pv_update.MAX_MANIFEST_BYTES
    assert images.REQUIRED_FILES == {c: f for c, f in pv_update.REQUIRED_FILES.items() if f}
    assert VERSION.regex.pattern == pv_update.VERSION_PATTERN.pattern

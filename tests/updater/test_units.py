"""Domain code without I/O beyond temporary files: versions, image checks, rollout waves."""
import io
import re
import tarfile

import pytest

from agent.provision.pv_update import ImageError, read_image
from services.updater.rollouts import waves
from services.updater.versions import is_newer, newest, version_key
from tests.updater.images import dns_image, image_bytes


@pytest.mark.parametrize("newer, older", [
    ("2.10", "2.9"), ("10", "9"), ("2.0.1", "2.0"), ("2.0", "2.0rc1"), ("2.0rc2", "2.0rc1"), ("3.2.6-2", "3.2.6-1"),
])
def test_versions_compare_as_versions(newer, older):
    assert is_newer(newer, older) and not is_newer(older, newer)


def test_equal_versions_and_newest():
    assert version_key("2.0") == version_key("2.0.0")
    assert not is_newer("2.0", "2.0.0")
    assert newest(["1", "2.9", "2.10", "2.10rc1"]) == "2.10"
    assert is_newer("1", None)


def _write(tmp_path, data, name="image.tar.gz"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_a_good_image_gives_its_manifest(tmp_path):
    manifest = read_image(_write(tmp_path, dns_image("2")))
    assert (manifest["component"], manifest["version"]) == ("dns", "2")


def test_a_truncated_image_is_refused(tmp_path):
    data = dns_image("2")
    with pytest.raises(ImageError, match="not a complete gzip'd tar file"):
        read_image(_write(tmp_path, data[: len(data) // 2]))


def test_not_gzip_is_refused(tmp_path):
    with pytest.raises(ImageError, match="not a complete gzip'd tar file"):
        read_image(_write(tmp_path, b"just some text, not an image"))


@pytest.mark.parametrize("manifest, message", [
    ({"format": 1, "component": "web", "version": "2"}, "component must be one of"),
    ({"format": 1, "component": "dns", "version": "../2"}, "version must be"),
    ({"format": 2, "component": "dns", "version": "2"}, "format must be 1"),
])
def test_bad_manifests_are_refused(tmp_path, manifest, message):
    data = image_bytes("dns", "2", {"files/knot/zones/pvverify.test.zone": "x"}, manifest=manifest)
    with pytest.raises(ImageError, match=message):
        read_image(_write(tmp_path, data))


def test_missing_manifest_and_required_file_are_refused(tmp_path):
    no_zone = image_bytes("dns", "2", {"files/knot/zones/other.zone": "x"})
    with pytest.raises(ImageError, match="must hold files/knot/zones/pvverify.test.zone"):
        read_image(_write(tmp_path, no_zone))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("files/x")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(ImageError, match="manifest.json is missing"):
        read_image(_write(tmp_path, buffer.getvalue()))


@pytest.mark.parametrize("name, kind, message", [
    ("../etc/passwd", tarfile.REGTYPE, "absolute paths and '..' are not allowed"),
    ("files/../../etc/passwd", tarfile.REGTYPE, "absolute paths and '..' are not allowed"),
    ("/etc/passwd", tarfile.REGTYPE, "absolute paths and '..' are not allowed"),
    ("files/link", tarfile.SYMTYPE, "only regular files and directories are allowed"),
    ("files/hard", tarfile.LNKTYPE, "only regular files and directories are allowed"),
    ("other/x", tarfile.REGTYPE, "everything but manifest.json must be under files/"),
], ids=["parent", "parent-under-files", "absolute", "symlink", "hardlink", "outside-files"])
def test_paths_outside_files_and_links_are_refused(tmp_path, name, kind, message):
    """A valid image but for one member: only that member's check can refuse it."""
    data = image_bytes("dns", "2", {"files/knot/zones/pvverify.test.zone": "x"}, extra={name: (kind, "/etc/shadow")})
    with pytest.raises(ImageError, match=re.escape(f"{name}: {message}")):
        read_image(_write(tmp_path, data))


def test_waves_put_a_canary_first_then_batches():
    assert waves(6, 1, 2) == [0, 1, 1, 2, 2, 3]
    assert waves(5, 0, 2) == [0, 0, 1, 1, 2]
    assert waves(3, 5, 2) == [0, 0, 0]

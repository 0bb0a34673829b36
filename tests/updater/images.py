"""Image files for tests, made the way an operator would (tar.gz with manifest.json and files/)."""
import io
import json
import tarfile

GOOD_ZONE = """$ORIGIN pvverify.test.
$TTL 60
@   SOA ns.pvverify.test. hostmaster.pvverify.test. {serial} 3600 600 86400 60
@   NS  ns
ns  A   127.0.0.1
@   TXT "PVOK"
release TXT "{version}"
"""
# A release whose internal zone lost its PVOK record: verification must catch it.
BROKEN_ZONE = """$ORIGIN pvverify.test.
$TTL 60
@   SOA ns.pvverify.test. hostmaster.pvverify.test. {serial} 3600 600 86400 60
@   NS  ns
ns  A   127.0.0.1
release TXT "{version}"
"""
GOOD_SUBNETS = [{
    "id": 1, "subnet": "198.51.100.0/24", "pools": [{"pool": "198.51.100.10 - 198.51.100.250"}],
    "relay": {"ip-addresses": ["127.0.0.2"]},
}]
# Valid for Kea, but the pool is exhausted before it starts: no lease for anyone.
BROKEN_SUBNETS = [{
    "id": 1, "subnet": "198.51.100.0/24", "pools": [], "relay": {"ip-addresses": ["127.0.0.2"]},
}]


def image_bytes(component, version, files, manifest=None, extra=None):
    """``extra``: {name: (tarfile member type, link target)} added after the files (links, traversals)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        entries = {"manifest.json": json.dumps(
            manifest if manifest is not None else {"format": 1, "component": component, "version": version,
                                                   "description": f"{component} {version} for tests"}
        )}
        entries.update(files)
        for name, content in entries.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


def dns_image(version, broken=False):
    zone = (BROKEN_ZONE if broken else GOOD_ZONE).format(serial=int(version.split(".")[0]) + 1, version=version)
    return image_bytes("dns", version, {"files/knot/zones/pvverify.test.zone": zone})


def dhcp_image(version, broken=False):
    subnets = BROKEN_SUBNETS if broken else GOOD_SUBNETS
    return image_bytes("dhcp", version, {"files/kea/subnet4.json": json.dumps(subnets)})

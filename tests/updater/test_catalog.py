"""The version catalog through the real gateway app and the real updater, inventory, broker and database."""
import hashlib
import uuid

import pytest
from falcon import testing
from sqlalchemy import text

from gateway.routes import PREFIX
from tests.conftest import create_token
from tests.updater.conftest import Registry
from tests.updater.images import dhcp_image, dns_image

GZIP = {"Content-Type": "application/gzip"}


def _stored_files(storage):
    return sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file())


def _image_rows(engine):
    with engine.connect() as connection:
        return connection.execute(text("SELECT component, version FROM updater.images ORDER BY id")).all()


@pytest.fixture
def local_mode(rpc, admin):
    rpc.call("inventory", "update_settings", admin, {"update": {"mode": "local"}})


def test_upload_records_checksum_and_lists_versions_in_version_order(api, storage, local_mode):
    for version in ("2.9", "2.10", "1"):
        added = api.simulate_post(f"{PREFIX}/versions", body=dns_image(version), headers=GZIP)
        assert added.status_code == 201, added.text
    assert added.json["version"] == "1" and len(added.json["sha256"]) == 64
    api.simulate_post(f"{PREFIX}/versions", body=dhcp_image("5"), headers=GZIP, params={"component": "dhcp"})

    listed = api.simulate_get(f"{PREFIX}/versions", params={"component": "dns"}).json
    assert listed["mode"] == "local"
    assert [v["version"] for v in listed["items"]] == ["1", "2.9", "2.10"]
    # <version>-<first 12 of the sha256>.tar.gz per image, and nothing left in incoming/.
    assert [f.rsplit("-", 1)[0] for f in _stored_files(storage)] == [
        "images/dhcp/5", "images/dns/1", "images/dns/2.10", "images/dns/2.9"]


def test_local_mode_lists_uploads_only(api, local_mode):
    api.simulate_post(f"{PREFIX}/versions", body=dns_image("2"), headers=GZIP)
    listed = api.simulate_get(f"{PREFIX}/versions").json
    assert listed["mode"] == "local"
    assert [(v["component"], v["version"], v["source"]) for v in listed["items"]] == [("dns", "2", "upload")]


@pytest.mark.parametrize("body, expected", [
    (dns_image("2")[:300], "not a complete gzip'd tar file"),
    (b"not an image at all", "not a complete gzip'd tar file"),
])
def test_a_malformed_or_truncated_file_is_refused_and_nothing_is_kept(api, storage, engine, local_mode, body, expected):
    refused = api.simulate_post(f"{PREFIX}/versions", body=body, headers=GZIP)
    assert refused.status_code == 400
    assert refused.json["error"] == "invalid_image" and expected in refused.json["message"]
    assert _stored_files(storage) == []
    assert _image_rows(engine) == []


def test_an_upload_cut_short_on_the_wire_is_refused(api, storage, engine, local_mode):
    data = dns_image("2")
    # The client announced more than it sent (a dropped connection looks the same to the server).
    refused = api.simulate_post(f"{PREFIX}/versions", body=data,
                                headers=dict(GZIP, **{"Content-Length": str(len(data) + 500)}))
    assert refused.status_code == 400 and "truncated" in str(refused.json["details"])
    assert _stored_files(storage) == []
    assert _image_rows(engine) == []


def test_wrong_component_duplicate_and_empty_uploads(api, engine, local_mode):
    wrong = api.simulate_post(f"{PREFIX}/versions", body=dns_image("2"), headers=GZIP, params={"component": "dhcp"})
    assert wrong.status_code == 400 and wrong.json["details"]["component"]
    assert api.simulate_post(f"{PREFIX}/versions", body=dns_image("2"), headers=GZIP).status_code == 201
    again = api.simulate_post(f"{PREFIX}/versions", body=dns_image("2"), headers=GZIP)
    assert again.status_code == 409 and "already in the catalog" in again.json["message"]
    empty = api.simulate_post(f"{PREFIX}/versions", body=b"", headers=dict(GZIP, **{"Content-Length": "0"}))
    assert empty.status_code == 400 and "empty" in empty.json["message"]
    no_length = api.simulate_post(f"{PREFIX}/versions", body=b"", headers=GZIP)
    assert no_length.status_code == 411 and no_length.json["error"] == "length_required"
    assert _image_rows(engine) == [("dns", "2")]


def test_viewers_may_list_but_not_upload(api, rpc, admin, storage, local_mode):
    rpc.call("inventory", "create_user", admin, {"name": "vera", "role": "viewer"})
    token = create_token(rpc, admin, {"user": "vera"})["token"]
    viewer = {"Authorization": f"Bearer {token}"}
    refused = api.simulate_post(f"{PREFIX}/versions", body=dns_image("2"), headers=dict(GZIP, **viewer))
    assert refused.status_code == 403
    assert _stored_files(storage) == []
    assert api.simulate_get(f"{PREFIX}/versions", headers=viewer).status_code == 200


@pytest.fixture
def registry():
    server = Registry({"dns": "dns-repo-token"})
    yield server
    server.close()


def test_internet_mode_lists_the_registry_with_the_repository_token(
        start_service, updater_settings, updater_app, inventory, rpc, admin, admin_token, registry, storage, engine):
    from services.updater.service import UpdaterService

    start_service(UpdaterService, {"updater": dict(updater_settings["updater"], registry_url=registry.url)})
    client = testing.TestClient(updater_app, headers={"Authorization": f"Bearer {admin_token}"})
    registry.images[("dns", "2.9")] = dns_image("2.9")
    registry.images[("dns", "2.10")] = dns_image("2.10")
    rpc.call("inventory", "update_settings", admin,
             {"update": {"mode": "internet", "repository_tokens": {"dns": "dns-repo-token"}}})

    listed = client.simulate_get(f"{PREFIX}/versions", params={"component": "dns"})
    assert listed.status_code == 200, listed.text
    assert [(v["version"], v["source"], v["stored"]) for v in listed.json["items"]] == [
        ("2.9", "registry", False), ("2.10", "registry", False)]

    rpc.call("inventory", "update_settings", admin, {"update": {"repository_tokens": {"dns": "wrong"}}})
    refused = client.simulate_get(f"{PREFIX}/versions", params={"component": "dns"})
    assert refused.status_code == 502 and refused.json["error"] == "registry_unavailable"
    assert "refused the dns repository token" in refused.json["message"]
    assert "wrong" not in refused.text

    rpc.call("inventory", "update_settings", admin, {"update": {"repository_tokens": {"dns": None}}})
    anonymous = client.simulate_get(f"{PREFIX}/versions", params={"component": "dns"})
    assert anonymous.status_code == 502 and "set update.repository_tokens.dns" in anonymous.json["message"]
    assert "Authorization" not in registry.request_headers[-1]

def test_a_registry_image_is_stored_only_when_its_checksum_is_given_and_matches(registry, storage, engine):
    """Internet mode fetches an image on first use (an update's install step); the registry's sha256 decides."""
    from sqlalchemy.orm import Session

    from services.updater.catalog import Catalog
    from services.updater.registry import Registry as RegistryClient
    from shared.errors import InvalidImage

    for version in ("3.3", "3.4", "3.5"):
        registry.images[("dns", version)] = dns_image(version)
    good = hashlib.sha256(registry.images[("dns", "3.3")]).hexdigest()
    registry.sha256[("dns", "3.4")] = "0" * 64  # the image was swapped or damaged after it was listed
    registry.sha256[("dns", "3.5")] = None  # no checksum to check against at all
    with Session(engine) as session:
        catalog = Catalog(session, storage, RegistryClient(registry.url, {"dns": "dns-repo-token"}))
        with pytest.raises(InvalidImage, match="the registry's dns 3.4 image does not match its checksum"):
            catalog.image("internet", "dns", "3.4")
        with pytest.raises(InvalidImage, match="the registry gives no sha256 for dns 3.5"):
            catalog.image("internet", "dns", "3.5")
        assert not any(path.endswith("/3.5/image") for path in registry.requests)  # not even downloaded
        assert _stored_files(storage) == [] and _image_rows(engine) == []

        fetched = catalog.image("internet", "dns", "3.3")
        assert (fetched.source, fetched.sha256) == ("registry", good)
    assert [f.rsplit("-", 1)[0] for f in _stored_files(storage)] == ["images/dns/3.3"]
    assert _image_rows(engine) == [("dns", "3.3")]


def test_an_upload_damaged_between_the_gateway_and_the_updater_is_refused_and_removed(
        updater, rpc, admin, storage, engine, local_mode):
    """The gateway hands over the sha256 and size it received; a file that differs is not taken."""
    from shared.errors import InvalidImage

    data = dns_image("2")
    incoming = storage / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    for damage, (sha256, size) in {
        "bytes changed": (hashlib.sha256(data).hexdigest(), len(data)),
        "size differs": (hashlib.sha256(data).hexdigest(), len(data) + 1),
    }.items():
        name = f"{uuid.uuid4().hex}.upload"
        (incoming / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if damage == "bytes changed" else data)
        with pytest.raises(InvalidImage, match="the upload was damaged on its way"):
            rpc.call("updater", "add_image", admin, {"upload": name, "sha256": sha256, "size_bytes": size})
    assert _stored_files(storage) == [] and _image_rows(engine) == []

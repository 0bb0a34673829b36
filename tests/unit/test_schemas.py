import pytest

from shared.errors import ValidationFailed
from shared.schemas import load_or_raise
from shared.schemas.servers import ServerCreate, ServerListQuery, ServerUpdate, requests_status
from shared.schemas.settings import AdminSettings


@pytest.mark.parametrize("address", ["10.0.0.1", "2001:db8::1", "dns1.example.com", "ns.example.com.", "host-1.lab"])
def test_valid_addresses(address):
    data = load_or_raise(ServerCreate(), {"name": "a", "address": address, "os": "ubuntu"})
    assert data["address"] == address


@pytest.mark.parametrize("address", ["", "bad..name", "-lead.example.com", "10.0.0", "a" * 64 + ".com", "sp ace.com", "300.1.1.1"])
def test_invalid_addresses(address):
    with pytest.raises(ValidationFailed) as err:
        load_or_raise(ServerCreate(), {"name": "a", "address": address, "os": "ubuntu"})
    assert "address" in err.value.details


def test_create_fills_defaults():
    data = load_or_raise(ServerCreate(), {"name": "a", "address": "10.0.0.1", "os": "centos"})
    assert data["ssh_port"] == 22 and data["ssh_user"] == "root" and data["runtime"] == "docker"
    assert data["components"] == ["dns", "dhcp", "monitor"]


def test_unknown_fields_and_each_problem_are_reported():
    with pytest.raises(ValidationFailed) as err:
        load_or_raise(ServerCreate(), {"name": "a", "os": "windows", "colour": "red", "ssh_port": 70000})
    details = err.value.details
    assert set(details) == {"address", "os", "colour", "ssh_port"}
    assert details["colour"] == ["Unknown field."]


def test_password_and_key_together_are_refused():
    with pytest.raises(ValidationFailed) as err:
        load_or_raise(ServerCreate(), {"name": "a", "address": "h.example", "os": "ubuntu", "ssh_password": "p", "ssh_private_key": "k"})
    assert "ssh_private_key" in err.value.details


def test_empty_update_is_refused():
    with pytest.raises(ValidationFailed, match="invalid"):
        load_or_raise(ServerUpdate(), {})


def test_list_query_bounds():
    assert load_or_raise(ServerListQuery(), {"page": "2"})["page"] == 2
    with pytest.raises(ValidationFailed):
        load_or_raise(ServerListQuery(), {"per_page": "0"})
    with pytest.raises(ValidationFailed):
        load_or_raise(ServerListQuery(), {"sort": "address"})


def test_requests_status_threshold():
    assert requests_status(4) == "green"
    assert requests_status(5) == "green"
    assert requests_status(3) == "red"
    assert requests_status(0) == "red"


def test_settings_patch_names_only_what_changes():
    patch = load_or_raise(AdminSettings(partial=True), {"monitoring": {"raw_retention_minutes": 60}})
    assert patch == {"monitoring": {"raw_retention_minutes": 60}}


def test_settings_defaults():
    defaults = AdminSettings().load({"monitoring": {}})["monitoring"]
    assert defaults["raw_retention_minutes"] == 1440
    assert defaults["communication_type"] == "push"


def test_non_object_body_is_refused():
    with pytest.raises(ValidationFailed, match="JSON object"):
        load_or_raise(ServerCreate(), ["a"])


def test_list_rows_have_the_documented_shape():
    from services.inventory.servers import list_row
    from shared.schemas.servers import ServerRow

    row = list_row(7, "dns-7", "10.0.0.7", "running", {"dns": "3.2.6"}, requests=5)
    assert ServerRow().load(row) == row  # unknown keys would raise
    assert row["requests_status"] == "green"

import pytest
from marshmallow import ValidationError

from shared.events import CATALOG, UnknownEvent, build_event, load_event

SERVER = {"id": 1, "name": "dns-1", "address": "10.0.0.1", "os": "ubuntu", "state": "unknown"}


def test_built_event_carries_envelope():
    payload = build_event("server_created", server=SERVER)
    assert payload["event"] == "server_created"
    assert payload["version"] == 1
    assert payload["occurred_at"].endswith("+00:00")
    assert payload["server"] == SERVER


def test_malformed_payload_is_refused_before_sending():
    with pytest.raises(ValidationError):
        build_event("server_created", server={"id": "not-a-number"})


def test_unknown_event_name():
    with pytest.raises(UnknownEvent):
        build_event("server_exploded", server=SERVER)


def test_consumer_ignores_fields_from_a_newer_emitter():
    payload = dict(build_event("server_deleted", server=SERVER), added_later=True)
    assert "added_later" not in load_event("server_deleted", payload)


def test_every_event_is_past_tense_with_a_version_and_a_source():
    for name, kind in CATALOG.items():
        assert name == kind.name
        assert kind.version >= 1
        assert kind.source
        assert kind.severity in {"info", "warning", "critical"}

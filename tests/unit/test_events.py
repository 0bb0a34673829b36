import pytest
from marshmallow import ValidationError

from shared.events import CATALOG, EventEmitter, UnknownEvent, build_event, load_event

SERVER = {"id": 1, "name": "dns-1", "address": "10.0.0.1", "os": "ubuntu", "state": "unknown"}


def test_built_event_carries_envelope():
    payload = build_event("server_created", server=SERVER)
    assert payload["event"] == "server_created"
    assert payload["version"] == 1
    assert payload["occurred_at"].endswith("+00:00")
    assert payload["server"] == SERVER


def test_every_event_gets_an_id_of_its_own():
    first, second = build_event("server_created", server=SERVER), build_event("server_created", server=SERVER)
    assert len(first["id"]) == 32 and first["id"] != second["id"]
    assert load_event("server_created", dict(first, sequence=7))["sequence"] == 7


def test_the_emitter_refuses_a_malformed_payload_and_another_services_event():
    written = []
    emitter = EventEmitter("provisioner", lambda name, body: written.append(name))
    with pytest.raises(ValidationError):
        emitter.emit("install_progress", server_id=3, task_id="t", step="connect", step_index=2, step_count=9,
                     status="half done")
    with pytest.raises(ValueError, match="server_created is an event of inventory, not of provisioner"):
        emitter.emit("server_created", server=SERVER)
    emitter.emit("install_progress", server_id=3, task_id="t", step="connect", step_index=2, step_count=9,
                 status="started")
    assert written == ["install_progress"]


def test_malformed_payload_is_refused_before_sending():
    with pytest.raises(ValidationError):
        build_event("server_created", server={"id": "not-a-number"})


def test_unknown_event_name():
    with pytest.raises(UnknownEvent):
        build_event("server_exploded", server=SERVER)


def test_consumer_ignores_fields_from_a_newer_emitter():
    payload = dict(build_event("server_deleted", server=SERVER), added_later=True)
    assert "added_later" not in load_event("server_deleted", payload)


# Reports of a state, not of a step that happened; ARCHITECTURE.md names them so.
STATE_REPORTS = {"install_progress", "update_progress", "disk_low", "backup_disk_low"}
IRREGULAR_PAST = {"sent", "lost", "run", "built", "begun", "done"}


def test_every_event_is_past_tense_with_a_version_and_a_source():
    for name, kind in CATALOG.items():
        last_word = name.split("_")[-1]
        past = last_word.endswith("ed") or last_word in IRREGULAR_PAST or name.endswith("_rolled_back")
        assert past or name in STATE_REPORTS, f"{name} is not a past-tense fact"
        assert name == kind.name
        assert kind.version >= 1
        assert kind.source
        assert kind.severity in {"info", "warning", "critical"}
    assert STATE_REPORTS <= set(CATALOG)  # no exemption outlives its event

"""The API's contracts are valid documents and say what the code does: the OpenAPI document (generated from
the route table) validates against OpenAPI 3.0, and the AsyncAPI document (generated from the event
catalogue) against AsyncAPI 3.0.0 and against the payloads the services really build."""
import json
from pathlib import Path

import jsonschema
import pytest
from openapi_spec_validator import validate

from gateway.asyncapi import build_asyncapi
from gateway.openapi import build_spec, statuses
from gateway.routes import OPERATIONS
from shared.events import CATALOG, build_event

# AsyncAPI's own JSON Schema of a 3.0.0 document, from the @asyncapi/specs package 6.11.1 (Apache-2.0).
ASYNCAPI_SCHEMA = json.loads((Path(__file__).parent / "asyncapi-3.0.0.schema.json").read_text())


def test_the_openapi_document_is_valid_openapi():
    document = build_spec(OPERATIONS)
    validate(document)
    refs = {ref for ref in _refs(document) if ref.startswith("#/components/responses/")}
    assert refs <= {f"#/components/responses/{name}" for name in document["components"]["responses"]}


def _refs(value):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_every_operation_documents_the_statuses_its_shape_implies():
    document = build_spec(OPERATIONS)
    for op in OPERATIONS:
        if op.family is None:
            continue
        documented = set(document["paths"][op.openapi_path][op.method.lower()]["responses"])
        assert {str(op.status), *map(str, statuses(op))} <= documented
        assert {"500", "503"} <= documented
        if op.auth.value != "public":
            assert {"401", "403"} <= documented
        if op.parameters():
            assert "404" in documented
        if op.body:
            assert {"400", "413", "415"} <= documented


def test_the_asyncapi_document_is_valid_asyncapi_3():
    document = build_asyncapi()
    errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).iter_errors(document)]
    assert not errors, errors[:5]
    broken = dict(document, channels=dict(document["channels"], bogus={"address": 1}))
    assert list(jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).iter_errors(broken))  # the check checks


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_catalogued_event_is_in_the_asyncapi_document_and_its_real_payloads_match_it(name):
    from services.notifier.templates import SAMPLES

    document = build_asyncapi()
    kind = CATALOG[name]
    channel = document["channels"][name]
    assert channel["address"] == name
    assert channel["bindings"]["amqp"]["exchange"]["name"] == f"{kind.source}.events"
    assert document["operations"][f"send_{name}"]["action"] == "send"
    payload_schema = {"$ref": f"#/components/messages/{name}/payload", "components": document["components"]}
    validator = jsonschema.Draft202012Validator(payload_schema)
    # What the emitting service publishes (the notifier's samples are built with build_event too).
    payload = SAMPLES.get(name) or build_event(name, server_id=1, task_id="t-1", step="transfer", step_index=2,
                                               step_count=5, status="started", server_name="dns-1",
                                               versions={"dns": "3.2.6"}, state="succeeded",
                                               reason="server_deleted", server_ids=[1])
    assert not list(validator.iter_errors(payload)), list(validator.iter_errors(payload))[:3]
    assert list(validator.iter_errors(dict(payload, version=kind.version + 1)))  # another version is not this one
    required = document["components"]["schemas"][kind.schema.__name__]["required"]
    assert list(validator.iter_errors({k: v for k, v in payload.items() if k != required[-1]}))

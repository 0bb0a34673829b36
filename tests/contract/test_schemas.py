"""The input schemas (shared/schemas) refuse, by class, what the database cannot hold: every integer a
request may carry is bounded, no string may hold NUL or an unpaired surrogate, input nests only so deep,
and time stamps keep their offsets within ±14:00."""
import importlib
import pkgutil

import pytest
from marshmallow import fields, validate

import shared.schemas
from shared.schemas import MAX_DEPTH, StrictSchema, load_or_raise
from shared.schemas.fields import INT32_MAX
from shared.errors import ValidationFailed

INT64_MAX = 2**63 - 1


def _input_schemas():
    for module in pkgutil.iter_modules(shared.schemas.__path__):
        importlib.import_module(f"shared.schemas.{module.name}")
    pending, found = [StrictSchema], []
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in found if cls is not StrictSchema and cls.__module__.startswith("shared.schemas")]


def _integers(field, name):
    """Every Integer field inside ``field`` (list items, dict values, nested schemas), with where it is."""
    if isinstance(field, fields.Integer):
        yield name, field
    elif isinstance(field, fields.List):
        yield from _integers(field.inner, f"{name}[]")
    elif isinstance(field, fields.Dict) and field.value_field is not None:
        yield from _integers(field.value_field, f"{name}{{}}")
    elif isinstance(field, fields.Nested) and isinstance(field.nested, type):
        for inner_name, inner in field.nested().fields.items():
            yield from _integers(inner, f"{name}.{inner_name}")


def _bounds(field):
    ranges = [v for v in field.validators if isinstance(v, validate.Range)]
    ranges += [r for v in field.validators if isinstance(v, validate.And) for r in v.validators
               if isinstance(r, validate.Range)]
    equal = [v for v in field.validators if isinstance(v, validate.Equal)]
    if equal:
        return equal[0].comparable, equal[0].comparable
    lows = [r.min for r in ranges if r.min is not None]
    highs = [r.max for r in ranges if r.max is not None]
    return (max(lows) if lows else None), (min(highs) if highs else None)


@pytest.mark.parametrize("schema", _input_schemas(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_integer_an_input_may_carry_is_bounded_to_what_a_column_holds(schema):
    for name, field in schema().fields.items():
        if field.dump_only:
            continue
        for where, integer in _integers(field, name):
            low, high = _bounds(integer)
            assert low is not None and high is not None, f"{schema.__name__}.{where} has no Range with both bounds"
            limit = INT64_MAX if getattr(integer, "metadata", {}).get("bigint") else INT32_MAX
            assert -limit - 1 <= low and high <= limit, f"{schema.__name__}.{where} allows {low}..{high}"


def _refused(schema, data):
    with pytest.raises(ValidationFailed) as refused:
        load_or_raise(schema, data)
    return refused.value.details


SERVER = {"name": "dns-1", "address": "192.0.2.1", "os": "ubuntu"}


@pytest.mark.parametrize("text", ["dns\x00-1", "dns-\ud800", "\udfff"])
def test_nul_and_unpaired_surrogates_are_refused_in_any_string_at_any_depth(text):
    from shared.schemas.notifier import ChannelCreate
    from shared.schemas.servers import ServerCreate

    assert "NUL" in _refused(ServerCreate(), dict(SERVER, name=text))["name"][0]
    assert "NUL" in _refused(ServerCreate(), dict(SERVER, ssh_password=text))["ssh_password"][0]
    details = _refused(ChannelCreate(), {"name": "c", "kind": "webhook", "settings": {"url": "http://a", "x": [text]}})
    assert "NUL" in details["settings"]["x"][0][0]
    assert "field name" in _refused(ChannelCreate(), {"name": "c", "kind": "webhook", "settings": {text: 1}})[
        "settings"]["_schema"][0]


def test_input_nested_deeper_than_the_limit_is_refused():
    from shared.schemas.notifier import ChannelCreate

    deep = shallow = {}
    for _ in range(MAX_DEPTH + 1):
        deep["a"] = {}
        deep = deep["a"]
    assert "deeper" in _refused(ChannelCreate(), {"name": "c", "kind": "chat", "settings": shallow})["_schema"][0]
    for _ in range(MAX_DEPTH - 3):
        shallow = shallow["a"]
    shallow.clear()  # now within the limit: the schema itself answers
    assert "_schema" not in _refused(ChannelCreate(), {"name": "c", "kind": "bogus", "settings": {"a": {}}})


@pytest.mark.parametrize("name", ["dns\u202e1", "dns\u20661", "dns\x1b[31m", "dns\n1", "dns\u200e"])
def test_server_names_refuse_control_and_bidirectional_formatting_characters(name):
    from shared.schemas.servers import ServerCreate, ServerUpdate

    assert any("control" in m for m in _refused(ServerCreate(), dict(SERVER, name=name))["name"])
    assert any("control" in m for m in _refused(ServerUpdate(), {"name": name})["name"])
    assert load_or_raise(ServerCreate(), dict(SERVER, name="dns-ümlaut 1"))["name"] == "dns-ümlaut 1"


@pytest.mark.parametrize("moment, problem", [
    ("2026-01-01T00:00:00+14:01", "offset"), ("2026-01-01T00:00:00-23:59", "offset"),
    ("0001-01-01T00:00:00+14:00", "year"), ("9999-12-31T23:59:59-14:00", "year")])
def test_time_stamps_refuse_offsets_beyond_14_hours_and_years_datetime_arithmetic_cannot_hold(moment, problem):
    from shared.schemas.monitoring import TimeRange

    assert problem in _refused(TimeRange(), {"start": moment})["start"][0]
    assert problem in _refused(TimeRange(), {"end": moment})["end"][0]


def test_a_time_range_may_be_empty_but_not_reversed():
    from shared.schemas.monitoring import TimeRange

    moment = "2026-01-01T00:00:00-14:00"
    empty = load_or_raise(TimeRange(), {"start": moment, "end": moment})
    assert empty["start"] == empty["end"]
    assert "after" in _refused(TimeRange(), {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"})["start"][0]


def test_integers_beyond_a_column_are_refused_not_sent_to_the_database():
    from shared.schemas.notifier import RuleCreate
    from shared.schemas.servers import ServerListQuery

    assert _refused(ServerListQuery(), {"page": str(INT32_MAX + 1)})["page"]
    assert _refused(RuleCreate(), {"name": "r", "channel_ids": [INT32_MAX + 1]})["channel_ids"]

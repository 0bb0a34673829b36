"""The fast loader of agent messages answers as the marshmallow schemas do.

``load_message`` takes a message in the agent's canonical form without
marshmallow; for anything else marshmallow decides. So whatever the fast path
accepts, marshmallow must accept with the same result, and whatever
marshmallow refuses, the fast path must not accept. Checked on the real
message kinds and on thousands of mutations of them (a seeded random walk, so
a failure can be replayed).
"""
import copy
import random
from datetime import datetime, timezone

import pytest
from marshmallow import ValidationError

from shared.schemas.agent import _MESSAGE, _fast_load, load_message

NOW = "2026-11-24T04:08:55.501419+00:00"


def canonical(kind):
    data = {
        "heartbeat": {"agent_version": "1.0.0", "versions": {"dns": "3.2.6", "monitor": "1.0.0"}},
        "system": {"load": [0.5, 1, 0.25],
                   "disks": [{"mount": "/", "total_bytes": 50_000, "used_bytes": 40_000},
                             {"mount": "/var", "total_bytes": 0, "used_bytes": 0}],
                   "swap": {"total_bytes": 2_000, "used_bytes": 1},
                   "memory": {"total_bytes": 8_000, "available_bytes": 4_000, "used_bytes": 4_000},
                   "connections": {"ESTABLISHED": 3, "LISTEN": 6}},
        "dns": {"period_start": "2026-11-24T04:07:55+00:00", "total": 7,
                "records": [{"name": "www.example.com.", "type": "A", "hits": 5, "last_access": NOW},
                            {"name": "example.com.", "type": "AAAA", "hits": 2, "last_access": "2026-11-24T04:08:00Z"}]},
    }[kind]
    return {"v": 1, "kind": kind, "server_id": 7, "seq": 12, "collected_at": NOW, "data": data}


ODD_VALUES = [None, True, False, 0, -1, 1.5, 5.0, float("nan"), float("inf"), "5", "", "x" * 300, [], {}, [1, 2, 3],
              "2026-11-24T04:08:55", "2026-11-24 04:08:55+02:00", "yesterday", 2**63, {"extra": 1}, "A\n", "a",
              "a\x00b", "\ud800", "2026-11-24T04:08:55+14:30", "0001-01-01T00:00:00+01:00", {"a\x00": 1}]


def leaves(value, path=()):
    """Every path into a message (dict keys and list positions), the message itself excluded."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield path + (key,)
        yield from leaves(child, path + (key,))


def mutate(message, rng):
    message = copy.deepcopy(message)
    path = rng.choice(list(leaves(message)))
    parent = message
    for key in path[:-1]:
        parent = parent[key]
    action = rng.random()
    if action < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action < 0.25 and isinstance(parent, dict):
        parent["unexpected"] = rng.choice(ODD_VALUES)
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return message


def marshmallow_answer(message):
    try:
        return _MESSAGE.load(message)
    except ValidationError:
        return "refused"


@pytest.mark.parametrize("kind", ["heartbeat", "system", "dns"])
def test_canonical_messages_take_the_fast_path_with_the_schema_result(kind):
    message = canonical(kind)
    fast = _fast_load(message)
    assert fast is not None
    assert fast == _MESSAGE.load(message)
    assert fast["collected_at"] == datetime(2026, 11, 24, 4, 8, 55, 501419, tzinfo=timezone.utc)


@pytest.mark.parametrize("kind", ["heartbeat", "system", "dns"])
def test_mutated_messages_never_get_a_different_answer(kind):
    rng = random.Random(f"fast-load-{kind}")
    taken = refused = 0
    for _ in range(3000):
        message = mutate(canonical(kind), rng)
        if rng.random() < 0.3:
            message = mutate(message, rng)
        expected = marshmallow_answer(message)
        fast = _fast_load(message)
        if fast is not None:
            taken += 1
            assert fast == expected, message
        if expected == "refused":
            refused += 1
            with pytest.raises(ValidationError):
                load_message(message)
        else:
            assert load_message(message) == expected
    # Both branches were really exercised.
    assert taken > 100 and refused > 500


def test_a_form_only_marshmallow_accepts_still_loads():
    message = canonical("system")
    message["data"]["swap"]["used_bytes"] = "12"  # marshmallow turns it into 12; the fast path steps aside
    assert _fast_load(message) is None
    assert load_message(message)["data"]["swap"]["used_bytes"] == 12

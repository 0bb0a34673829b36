"""bench/fleet.py's simulated agents speak the real protocol: what the well-behaved ones send passes the
consumer's and the gateway's validation, and what the misbehaving ones send is refused by it, so the fleet
benchmark measures the real path and rots visibly when the protocol moves on."""
import json
import random
from datetime import datetime, timezone

import pytest
from marshmallow import ValidationError

from types import SimpleNamespace

from bench.fleet import (BAD_KINDS, Records, _ConfirmingPublisher, bad_message, dns_body, dns_message, heartbeat_body,
                         heartbeat_message, rendered_records, role, system_body, system_message)
from services.monitoring_ingest.exceptions import MalformedMessage
from services.monitoring_ingest.ingest import Senders, parse
from shared.schemas.agent import HEARTBEAT_BEHIND, Heartbeat, collected_at_problem, load_message, stats_routing_key

VHOST = "steward_test"
RELAY = "steward"


def messages(server_id=42):
    rng, now = random.Random(3), datetime.now(timezone.utc)
    return [system_message(server_id, 1, now, rng), dns_message(server_id, 1, now, rng, Records())]


def accepted_by_consumer(message, key):
    """What the batch consumer does with a statistics message from the shared relay user (raises if it refuses)."""
    parsed = parse(json.dumps(message).encode())
    Senders(VHOST, [RELAY]).check(parsed, key, RELAY)
    return parsed


def accepted_by_gateway(message):
    heartbeat = load_message(message) if message.get("kind") == "heartbeat" else Heartbeat().load(message)
    problem = collected_at_problem(heartbeat["collected_at"], datetime.now(timezone.utc), HEARTBEAT_BEHIND)
    if problem:
        raise ValidationError(problem)
    return heartbeat


def test_well_behaved_agents_are_accepted():
    for message in messages():
        parsed = accepted_by_consumer(message, stats_routing_key(message["kind"], 42))
        assert parsed["server_id"] == 42 and parsed["kind"] == message["kind"]
    assert accepted_by_gateway(heartbeat_message(42, 7, datetime.now(timezone.utc)))["seq"] == 7


def test_dns_records_have_hot_names_and_a_long_tail():
    records, rng = Records(), random.Random(1)
    draws = [name for _ in range(200) for name, _ in records.draw(rng, 20)]
    hottest = max(set(draws), key=draws.count)
    assert draws.count(hottest) > 50 and len(set(draws)) > 300


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_misbehaving_agents_are_refused(kind):
    for message in messages():
        with pytest.raises(MalformedMessage):
            accepted_by_consumer(bad_message(kind, message), stats_routing_key(message["kind"], 42))
    if kind != "wrong_token":  # over HTTP a wrong token is the gateway's 401, not the body's
        with pytest.raises(ValidationError):
            accepted_by_gateway(bad_message(kind, heartbeat_message(42, 7, datetime.now(timezone.utc))))


def test_one_agent_in_a_hundred_misbehaves_and_one_goes_silent():
    roles = [role(i) for i in range(10_000)]
    assert roles.count("silent") == 100 and sum(roles.count(k) for k in BAD_KINDS) == 100
    assert all(roles.count(k) >= 33 for k in BAD_KINDS)


def test_the_heartbeat_template_sends_the_bytes_the_envelope_gives():
    now = datetime.now(timezone.utc)
    for server_id, seq in ((42, 7), (1, 1), (123456, 99999)):
        assert heartbeat_body(server_id, seq, now) == json.dumps(heartbeat_message(server_id, seq, now)).encode()


def test_the_statistics_templates_send_the_bytes_the_messages_give():
    now, records = datetime.now(timezone.utc), Records()
    for seed in range(20):
        assert system_body(seed, 3, now, random.Random(seed)) == json.dumps(system_message(seed, 3, now, random.Random(seed)))
        picked = records.draw(random.Random(seed), 3 + seed)
        assert dns_body(seed, 3, now, rendered_records(picked)) == json.dumps(dns_message(seed, 3, now, None, None, picked))


class _Counted:
    def __init__(self):
        self.counts = {}

    def add(self, name, n=1):
        self.counts[name] = self.counts.get(name, 0) + n


def _confirm(name, tag, multiple):
    return SimpleNamespace(method=SimpleNamespace(NAME=name, delivery_tag=tag, multiple=multiple))


def test_the_simulators_publisher_settles_each_confirm_once():
    counted = _Counted()
    publisher = _ConfirmingPublisher(counted)
    publisher.unconfirmed.update((tag, None) for tag in range(1, 11))
    for confirm, counts, left in (
            (_confirm("Basic.Ack", 3, False), {"st_confirmed": 1}, [1, 2, 4, 5, 6, 7, 8, 9, 10]),  # one, out of order
            (_confirm("Basic.Ack", 4, True), {"st_confirmed": 4}, [5, 6, 7, 8, 9, 10]),  # 1, 2 and 4: 3 was settled
            (_confirm("Basic.Nack", 6, True), {"st_confirmed": 4, "st_nacked": 2}, [7, 8, 9, 10]),  # 5 and 6
            (_confirm("Basic.Ack", 6, False), {"st_confirmed": 4, "st_nacked": 2}, [7, 8, 9, 10])):  # again: nothing
        publisher._on_confirm(confirm)
        assert counted.counts == counts and list(publisher.unconfirmed) == left

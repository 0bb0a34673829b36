"""Domain code on the real database with injected timestamps: windows, repeats, flapping, retries."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.notifier.channels import Channels
from services.notifier.delivery import Courier
from services.notifier.intake import Intake
from services.notifier.models import Delivery, DeliveryItem
from services.notifier.policy import Policy
from services.notifier.rules import Rules
from services.notifier.templates import Templates
from services.notifier.exceptions import DeliveryFailed
from shared.crypto import SecretBox
from shared.events import build_event

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc)
POLICY = Policy(digest_window_seconds=5, flap_window_seconds=600, flap_changes=4, max_attempts=3,
                backoff_base_seconds=10, backoff_max_seconds=60)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def session(engine):
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def channel(session):
    channel = Channels(session, SecretBox("k")).create({"name": "hook", "kind": "webhook", "enabled": True, "settings": {
        "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"}})
    Rules(session).create({"name": "all", "enabled": True, "event_types": [], "min_severity": "info", "server_ids": [],
                           "server_search": None, "channel_ids": [channel.id]})
    session.commit()
    return channel


def state(server_id, new, at, previous="unknown"):
    return build_event("server_state_changed", occurred_at=at, server_id=server_id, server_name=f"dns-{server_id}",
                       previous_state=previous, state=new)


def deliveries(session):
    return session.scalars(select(Delivery).order_by(Delivery.id)).all()


def test_a_window_stays_open_while_events_keep_coming_then_the_next_opens(session, clock, channel):
    intake = Intake(session, POLICY, clock)
    assert intake.receive("server_state_changed", state(1, "down", T0)) == "notified"
    clock.advance(4)  # within 5 s of the last event: joins, and the window now ends at T0+9
    intake.receive("disk_low", build_event("disk_low", server_id=2, server_name="dns-2", mountpoint="/",
                                           free_percent=2.0))
    clock.advance(6)  # quiet for longer than the window
    intake.receive("server_state_changed", state(3, "down", clock.now))
    session.commit()
    first, second = deliveries(session)
    assert (first.status, first.item_count, first.due_at) == ("pending", 2, T0 + timedelta(seconds=9))
    assert (second.status, second.item_count) == ("collecting", 1)
    assert second.due_at == clock.now + timedelta(seconds=5)


def test_a_steady_stream_is_still_sent_when_the_window_reaches_its_cap(session, clock, channel):
    intake = Intake(session, Policy(digest_window_seconds=5, digest_max_seconds=12), clock)
    for server_id in range(1, 6):  # one event every 4 s, never 5 s of quiet
        intake.receive("server_state_changed", state(server_id, "down", clock.now))
        clock.advance(4)
    session.commit()
    assert [(d.item_count, d.due_at - d.created_at) for d in deliveries(session)] == [
        (3, timedelta(seconds=12)), (2, timedelta(seconds=9))]


def test_redelivered_repeated_and_stale_state_changes_notify_nothing(session, clock, channel):
    intake = Intake(session, POLICY, clock)
    down = state(1, "down", T0)
    assert intake.receive("server_state_changed", down) == "notified"
    assert intake.receive("server_state_changed", down) == "duplicate"  # the same event again
    assert intake.receive("server_state_changed", state(1, "down", T0 + timedelta(seconds=1))) == "repeat"
    assert intake.receive("server_state_changed", state(1, "up", T0 - timedelta(seconds=30))) == "stale"
    assert intake.receive("server_state_changed", state(1, "up", T0 + timedelta(seconds=60), "down")) == "notified"
    session.commit()
    assert [i.payload["state"] for i in session.scalars(select(DeliveryItem).order_by(DeliveryItem.id))] == \
        ["down", "up"]


def test_a_flapping_server_gets_one_notice_then_silence_then_the_state_it_settled_in(session, clock, channel):
    intake = Intake(session, POLICY, clock)
    outcomes = []
    for minute in range(8):
        at = T0 + timedelta(minutes=minute)
        clock.now = at
        outcomes.append(intake.receive("server_state_changed", state(5, "down" if minute % 2 == 0 else "up", at)))
    assert outcomes == ["notified"] * 4 + ["flapping"] + ["muted"] * 3
    clock.now = T0 + timedelta(minutes=7, seconds=599)
    assert intake.settle_flapping() == 0  # not yet stable for the whole flap window
    clock.now = T0 + timedelta(minutes=17)
    assert intake.settle_flapping() == 1
    session.commit()
    items = session.scalars(select(DeliveryItem).order_by(DeliveryItem.id)).all()
    assert [i.event_type for i in items] == ["server_state_changed"] * 4 + ["server_flapping", "server_state_changed"]
    assert items[-1].payload["state"] == "up" and items[-1].payload["settled_after_flapping"] is True
    assert intake.settle_flapping() == 0  # reported once


def test_failed_sends_back_off_exponentially_with_jitter_then_dead_letter(session, clock, channel):
    intake = Intake(session, POLICY, clock)
    intake.receive("backup_failed", build_event("backup_failed", backup_server_id=1, backup_server_name="b-1",
                                                backup_id="x", error="disk full"))
    session.commit()
    sent = []

    def refusing(kind, settings, secret, message, clock):
        sent.append(message)
        raise DeliveryFailed("POST http://127.0.0.1:9/hook: HTTP 503 busy")

    courier = Courier(session, SecretBox("k"), Templates(session, "https://s.example"), POLICY, clock,
                      rng=lambda: 1.0, transport=refusing)
    clock.advance(5)
    assert courier.send_due() == 1
    [delivery] = deliveries(session)
    assert delivery.attempts == 1 and delivery.status == "pending"
    assert delivery.due_at == clock.now + timedelta(seconds=10)  # base * 2^0, at the top of the jitter
    assert courier.send_due() == 0  # not due yet
    clock.advance(10)
    courier.send_due()
    session.refresh(delivery)
    assert delivery.due_at == clock.now + timedelta(seconds=20)
    clock.advance(20)
    courier.send_due()
    session.refresh(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("dead", 3, "POST http://127.0.0.1:9/hook: HTTP 503 busy")
    assert len(sent) == 3 and sent[0].subject == "[Steward] Backup on b-1 FAILED"


def test_backoff_is_capped_and_jittered_between_half_and_all_of_the_step():
    assert POLICY.backoff(1, rng=lambda: 0.0) == timedelta(seconds=5)
    assert POLICY.backoff(3, rng=lambda: 1.0) == timedelta(seconds=40)
    assert POLICY.backoff(30, rng=lambda: 1.0) == timedelta(seconds=60)


def test_the_service_subscribes_to_every_notifiable_event_at_its_source():
    from nameko.events import EventHandler

    from services.notifier.service import NotifierService
    from shared.events import CATALOG
    from shared.schemas.notifier import NOTIFIABLE_EVENTS

    subscribed = {(h.source_service, h.event_type)
                  for name in dir(NotifierService) if name.startswith("handle_")
                  for h in getattr(getattr(NotifierService, name), "nameko_entrypoints", ())
                  if isinstance(h, EventHandler)}
    assert subscribed == {(CATALOG[name].source, name) for name in NOTIFIABLE_EVENTS}
    assert "install_progress" not in NOTIFIABLE_EVENTS and "server_state_changed" in NOTIFIABLE_EVENTS


def test_backup_servers_are_not_taken_for_managed_servers_with_the_same_id(session, clock):
    box = SecretBox("k")
    channel = Channels(session, box).create({"name": "hook", "kind": "webhook", "enabled": True, "settings": {
        "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"}})
    rules = Rules(session)
    base = {"enabled": True, "event_types": [], "min_severity": "info", "channel_ids": [channel.id]}
    rules.create(dict(base, name="managed server 4", server_ids=[4], server_search=None))
    session.commit()
    failed = build_event("backup_failed", backup_server_id=4, backup_server_name="backup-berlin", backup_id="b",
                         error="disk full")
    intake = Intake(session, POLICY, clock)
    assert intake.receive("backup_failed", failed) == "no_rule"
    rules.create(dict(base, name="berlin", server_ids=[], server_search="Berlin"))
    session.commit()
    assert intake.receive("backup_failed", build_event("backup_failed", backup_server_id=4,
                                                       backup_server_name="backup-berlin", backup_id="c",
                                                       error="disk full")) == "notified"
    rendered = Templates(session, "https://s.example").render_one("email", "backup_failed", failed, "critical")
    assert "https://s.example/api/v2/backup-servers/4" in rendered.body


def test_a_message_no_template_can_render_still_goes_out_as_json(session, clock, channel):
    intake = Intake(session, POLICY, clock)
    intake.receive("disk_low", build_event("disk_low", server_id=2, server_name="dns-2", mountpoint="/",
                                           free_percent=2.0))
    session.commit()

    class BrokenTemplates:
        def render_one(self, *args):
            raise RuntimeError("a template bug")

    sent = []
    courier = Courier(session, SecretBox("k"), BrokenTemplates(), POLICY, clock,
                      transport=lambda kind, settings, secret, message, clock: sent.append(message) or "HTTP 204")
    clock.advance(5)
    assert courier.send_due() == 1
    assert sent[0].subject == "[Steward] 1 event(s): disk_low" and '"free_percent": 2.0' in sent[0].body
    assert deliveries(session)[0].status == "delivered"


def test_a_secret_sealed_under_another_key_fails_the_attempt_not_the_queue(session, clock, channel):
    Intake(session, POLICY, clock).receive("disk_low", build_event(
        "disk_low", server_id=2, server_name="dns-2", mountpoint="/", free_percent=2.0))
    session.commit()
    courier = Courier(session, SecretBox("another key"), Templates(session, "https://s.example"), POLICY, clock,
                      transport=lambda *args, **kwargs: "HTTP 204")
    clock.advance(5)
    assert courier.send_due() == 1
    [delivery] = deliveries(session)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "internal error: ValueError")


class LockWait:
    """A clock for one handler that waited on the window's lock: the event arrived at ``arrived``, and every
    later reading is ``locked`` (the handler before it held the row that long)."""

    def __init__(self, arrived, locked):
        self.readings = iter([arrived])
        self.locked = locked

    def __call__(self):
        return next(self.readings, self.locked)


def test_a_slow_handler_does_not_cut_the_burst_behind_it_out_of_its_window(session, channel):
    """The burst of 200 that split 199 + 1: the window's first handler held the row past the window's end."""
    first = Intake(session, POLICY, LockWait(T0, T0 + timedelta(seconds=7)))
    first.receive("server_state_changed", state(1, "down", T0))
    session.commit()  # the window runs a whole window from when its item committed, not from its arrival
    assert deliveries(session)[0].due_at == T0 + timedelta(seconds=12)
    # Arrived at T0+1, while the first handler held the row; got the lock at T0+13, past the window's end.
    behind = Intake(session, POLICY, LockWait(T0 + timedelta(seconds=1), T0 + timedelta(seconds=13)))
    behind.receive("server_state_changed", state(2, "down", T0 + timedelta(seconds=1)))
    session.commit()
    [window] = deliveries(session)
    assert (window.status, window.item_count, window.due_at) == ("collecting", 2, T0 + timedelta(seconds=18))


def test_a_fleet_silence_is_one_message_naming_how_many(session, clock, channel):
    incident = build_event("fleet_silence_detected", silent_servers=10, servers_up=12, silent_since=T0.isoformat(),
                           server_ids=list(range(1, 11)))
    assert Intake(session, POLICY, clock).receive("fleet_silence_detected", incident) == "notified"
    session.commit()
    [window] = deliveries(session)
    assert window.item_count == 1
    rendered = Templates(session, "https://steward.example").render_one("webhook", "fleet_silence_detected", incident,
                                                                        "critical")
    assert rendered.subject == "[Steward] 10 of 12 servers fell silent at once"
    assert "marks none of them down" in rendered.body

"""From an event to items waiting in each matching channel's open window.

Everything here runs in the event handler's transaction, which commits before
the event is acknowledged; all shared state is in rows locked for the
transaction, so any number of replicas may handle events side by side:

* a redelivered or republished event is recognised by its id in ``received_events``;
* a server's state changes pass through its locked ``server_states`` row:
  repeats and stale (older) changes are dropped, flapping is muted;
* each channel has at most one *collecting* delivery (a partial unique
  index); items join it while they come less than a window apart (up to a
  cap), so a burst becomes one digest.
"""
import hashlib
import json
from datetime import datetime, timezone

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert

from services.notifier.models import Delivery, DeliveryItem, ReceivedEvent, ServerState
from services.notifier.rules import Rules
from services.notifier.templates import FLAPPING, MANAGED_SERVERS, subject_of
from shared.events import build_event, event_type, load_event

NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)  # a server's state before its first change


def event_key(name, payload):
    """The event's id (shared/outbox.py); a hash of its content for one emitted before events had ids."""
    if payload.get("id"):
        return payload["id"]
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{name}\n{canonical}".encode()).hexdigest()


def severity_of(name, payload):
    """The catalog's default, lowered for good news and for a cancel someone chose, raised for failed tasks and
    for a verification that found a backup bad."""
    if name == "server_state_changed" and payload["state"] == "up":
        return "info"
    if name in ("install_finished", "update_finished", "backup_restored", "backup_pruned") \
            and payload["state"] != "succeeded":
        return "warning"
    if name == "backup_failed" and payload.get("state") == "cancelled":
        return "warning"
    if name == "backup_verified" and payload.get("error"):
        return "critical" if payload.get("state") in (None, "succeeded") else "warning"
    return event_type(name).severity


class Intake:
    def __init__(self, session, policy, clock):
        self.session = session
        self.policy = policy
        self.clock = clock

    def receive(self, name, payload):
        """Record what ``payload`` means for each channel; returns what became of it.

        Raises marshmallow's ValidationError if the payload does not fit the catalog.
        """
        loaded = load_event(name, payload)
        now = self.clock()
        seen = self.session.execute(
            insert(ReceivedEvent).values(key=event_key(name, payload), event_type=name, received_at=now)
            .on_conflict_do_nothing().returning(ReceivedEvent.key)
        ).scalar()
        if seen is None:
            return "duplicate"
        if name == "server_state_changed":
            outcome, notices = self._state_change(payload, loaded["occurred_at"])
        else:
            outcome, notices = "notified", [(name, payload, severity_of(name, payload))]
        items = sum(self.notify(*notice, now=now) for notice in notices)
        return outcome if items or outcome != "notified" else "no_rule"

    def notify(self, name, payload, severity, now):
        """Add one item per matching channel; returns how many."""
        server_id, server_name, collection = subject_of(name, payload)
        if collection != MANAGED_SERVERS:
            server_id = None  # a rule's server ids name managed servers; its name search still applies
        channels = Rules(self.session).channels_for(name, severity, server_id, server_name)
        for channel in channels:
            delivery = self._open_window(channel, now)
            self.session.add(DeliveryItem(delivery_id=delivery.id, event_type=name, severity=severity,
                                          server_id=server_id, server_name=server_name, payload=payload,
                                          received_at=now))
            delivery.item_count += 1
            # The burst goes on: the window stays open one more window from now, as this item is about to
            # commit (not from when it arrived: a handler may hold the row for seconds on a loaded machine).
            extended = min(self.clock() + self.policy.digest_window, delivery.created_at + self.policy.digest_max)
            delivery.due_at = max(delivery.due_at, extended)
        self.session.flush()
        return len(channels)

    def _open_window(self, channel, arrived):
        """The channel's collecting delivery for an item that arrived at ``arrived``, opened if need be."""
        while True:
            delivery = self.session.scalar(
                select(Delivery).where(Delivery.channel_id == channel.id, Delivery.status == "collecting")
                .with_for_update())
            now = max(arrived, self.clock())  # the lock may have kept us waiting
            if delivery is not None:
                # Judged by when the event arrived, not by when this handler got the lock, which the
                # window's previous handler may have held for seconds: what arrived in time belongs to it.
                if delivery.due_at > arrived:
                    return delivery
                delivery.status = "pending"  # its window is over; the sender renders and sends it
                self.session.flush()
            opened = self.session.execute(
                insert(Delivery).values(channel_id=channel.id, channel_name=channel.name, channel_kind=channel.kind,
                                        status="collecting", created_at=now, due_at=now + self.policy.digest_window,
                                        item_count=0, attempts=0)
                .on_conflict_do_nothing(index_elements=["channel_id"], index_where=text("status = 'collecting'"))
                .returning(Delivery.id)
            ).scalar()
            if opened is not None:
                return self.session.get(Delivery, opened)
            # Another replica opened one between our SELECT and INSERT: lock that one.

    def _server_state(self, server_id, server_name):
        locked = select(ServerState).where(ServerState.server_id == server_id).with_for_update()
        row = self.session.scalar(locked)
        if row is None:
            self.session.execute(insert(ServerState).values(
                server_id=server_id, server_name=server_name, state="unknown", changed_at=NEVER, recent_changes=[],
                muted_changes=0).on_conflict_do_nothing())
            row = self.session.scalar(locked.execution_options(populate_existing=True))
        return row

    def _state_change(self, payload, occurred_at):
        row = self._server_state(payload["server_id"], payload["server_name"])
        if row.state == payload["state"]:
            return "repeat", []
        if occurred_at <= row.changed_at:
            return "stale", []
        row.state, row.changed_at, row.server_name = payload["state"], occurred_at, payload["server_name"]
        row.recent_changes = [t for t in row.recent_changes if t > occurred_at - self.policy.flap_window] + [occurred_at]
        if row.flapping_since is not None:
            row.muted_changes += 1
            return "muted", []
        if len(row.recent_changes) > self.policy.flap_changes:
            row.flapping_since, row.muted_changes = occurred_at, 0
            notice = dict(payload, event=FLAPPING, changes=len(row.recent_changes),
                          window_minutes=round(self.policy.flap_window_seconds / 60, 1))
            return "flapping", [(FLAPPING, notice, "warning")]
        return "notified", [("server_state_changed", payload, severity_of("server_state_changed", payload))]

    def settle_flapping(self):
        """Servers stable for a whole flap window after flapping: report the state they settled in."""
        now = self.clock()
        rows = self.session.scalars(
            select(ServerState).where(ServerState.flapping_since.is_not(None),
                                      ServerState.changed_at <= now - self.policy.flap_window)
            .with_for_update(skip_locked=True)).all()
        for row in rows:
            payload = build_event("server_state_changed", occurred_at=now, server_id=row.server_id,
                                  server_name=row.server_name, previous_state="unknown", state=row.state)
            payload["settled_after_flapping"] = True
            row.flapping_since, row.recent_changes = None, []
            self.notify("server_state_changed", payload, severity_of("server_state_changed", payload), now=now)
        return len(rows)

    def forget_old_events(self):
        cutoff = self.clock() - self.policy.received_retention
        return self.session.execute(ReceivedEvent.__table__.delete().where(ReceivedEvent.received_at < cutoff)).rowcount

"""Sending due deliveries, once each, from any number of replicas; the delivery log.

A replica claims one due delivery at a time with ``FOR UPDATE SKIP LOCKED``
and keeps the row locked while it sends, so no other replica sends it too.
The attempt and the new state commit together; if the process dies mid-send
the transaction rolls back and the delivery is due again (the far end may
then see it twice, with the same delivery id, which it can use to drop it).
"""
import json
import logging
import random
import time

from sqlalchemy import func, select

from services.notifier.models import Channel, Delivery, DeliveryAttempt, DeliveryItem
from services.notifier.exceptions import DeliveryFailed
from services.notifier.transports import Message, send
from shared.errors import Conflict, DeliveryNotFound

DUE_STATUSES = ("collecting", "pending")

log = logging.getLogger(__name__)


class Courier:
    def __init__(self, session, secrets, templates, policy, clock, rng=random.random, transport=send):
        self.session = session
        self.secrets = secrets
        self.templates = templates
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.transport = transport

    def send_due(self, limit=100):
        """Send up to ``limit`` due deliveries; returns how many were attempted."""
        attempted = 0
        while attempted < limit:
            delivery = self._claim()
            if delivery is None:
                break
            if delivery.subject is None:
                # Close its window (render it) in a short transaction of its own: event handlers
                # wait on a collecting row, and the send may take seconds.
                self._close(delivery)
                self.session.commit()
                continue
            self._attempt(delivery)
            self.session.commit()
            attempted += 1
        self.session.rollback()
        return attempted

    def _claim(self):
        return self.session.scalars(
            select(Delivery).where(Delivery.status.in_(DUE_STATUSES), Delivery.due_at <= self.clock())
            .order_by(Delivery.due_at).limit(1).with_for_update(skip_locked=True)
        ).first()

    def _close(self, delivery):
        items = self.session.scalars(
            select(DeliveryItem).where(DeliveryItem.delivery_id == delivery.id).order_by(DeliveryItem.id)).all()
        try:
            if len(items) == 1:
                rendered = self.templates.render_one(delivery.channel_kind, items[0].event_type, items[0].payload,
                                                     items[0].severity)
            else:
                rendered = self.templates.render_digest(delivery.channel_kind,
                                                        [(i.event_type, i.payload, i.severity) for i in items])
            subject, body = rendered.subject, rendered.body
        except Exception:
            # A payload no template expected must not hold up this channel (or, first in line, every other).
            log.exception("delivery %s: templates failed; sending the events as JSON", delivery.id)
            subject = f"[Steward] {len(items)} event(s): {', '.join(sorted({i.event_type for i in items}))}"
            body = json.dumps([i.payload for i in items], indent=2, sort_keys=True, default=str)
        delivery.subject, delivery.body, delivery.status = subject, body, "pending"

    def _attempt(self, delivery):
        channel = self.session.get(Channel, delivery.channel_id) if delivery.channel_id else None
        started_at, started = self.clock(), time.perf_counter()
        if channel is None or not channel.enabled:
            ok, result = False, "the channel was deleted" if channel is None else "the channel is disabled"
        else:
            items = self.session.scalars(
                select(DeliveryItem).where(DeliveryItem.delivery_id == delivery.id).order_by(DeliveryItem.id)).all()
            severity = max((i.severity for i in items), key=("info", "warning", "critical").index, default="info")
            message = Message(delivery.id, delivery.subject, delivery.body, severity, [i.payload for i in items])
            try:
                secret = self.secrets.open(channel.secret_sealed)
                ok, result = True, self.transport(channel.kind, channel.settings, secret, message,
                                                  clock=lambda: self.clock().timestamp())
            except DeliveryFailed as exc:
                ok, result = False, str(exc)
            except Exception as exc:  # a bug or an unopenable secret: log it, retry it, never stall the queue
                log.exception("delivery %s: sending failed unexpectedly", delivery.id)
                ok, result = False, f"internal error: {type(exc).__name__}"
        self.session.add(DeliveryAttempt(delivery_id=delivery.id, started_at=started_at, ok=ok, result=result,
                                         duration_ms=round((time.perf_counter() - started) * 1000, 1)))
        delivery.attempts += 1
        if ok:
            delivery.status, delivery.delivered_at, delivery.last_error = "delivered", self.clock(), None
        elif channel is None or not channel.enabled or delivery.attempts >= self.policy.max_attempts:
            delivery.status, delivery.last_error = "dead", result
        else:
            delivery.last_error = result
            delivery.due_at = self.clock() + self.policy.backoff(delivery.attempts, self.rng)


class DeliveryLog:
    def __init__(self, session, clock):
        self.session = session
        self.clock = clock

    def page(self, status=None, channel_id=None, limit=50):
        query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
        if status:
            query = query.where(Delivery.status == status)
        if channel_id:
            query = query.where(Delivery.channel_id == channel_id)
        deliveries = self.session.scalars(query).all()
        summaries = self._summaries([d.id for d in deliveries])
        return [delivery_dict(d, *summaries.get(d.id, ([], []))) for d in deliveries]

    def get(self, delivery_id):
        delivery = self.session.get(Delivery, delivery_id)
        if delivery is None:
            raise DeliveryNotFound(f"no delivery {delivery_id}")
        event_types, server_ids = self._summaries([delivery_id]).get(delivery_id, ([], []))
        attempts = self.session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                                        .order_by(DeliveryAttempt.id)).all()
        return dict(delivery_dict(delivery, event_types, server_ids), body=delivery.body, attempt_log=[
            {"started_at": a.started_at, "duration_ms": a.duration_ms, "ok": a.ok, "result": a.result}
            for a in attempts])

    def retry(self, delivery_id):
        """Send a dead-lettered delivery again, with a fresh budget of attempts."""
        delivery = self.session.scalar(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
        if delivery is None:
            raise DeliveryNotFound(f"no delivery {delivery_id}")
        if delivery.status != "dead":
            raise Conflict(f"delivery {delivery_id} is {delivery.status}; only dead-lettered deliveries are retried",
                           {"status": [delivery.status]})
        delivery.status, delivery.attempts, delivery.due_at = "pending", 0, self.clock()
        self.session.flush()
        return delivery_id

    def _summaries(self, ids):
        if not ids:
            return {}
        rows = self.session.execute(
            select(DeliveryItem.delivery_id, func.array_agg(func.distinct(DeliveryItem.event_type)),
                   func.array_agg(func.distinct(DeliveryItem.server_id)))
            .where(DeliveryItem.delivery_id.in_(ids)).group_by(DeliveryItem.delivery_id))
        return {delivery_id: (types, [s for s in servers if s is not None]) for delivery_id, types, servers in rows}


def delivery_dict(delivery, event_types, server_ids):
    return {"id": delivery.id, "channel_id": delivery.channel_id, "channel_name": delivery.channel_name,
            "channel_kind": delivery.channel_kind, "status": delivery.status, "created_at": delivery.created_at,
            "due_at": delivery.due_at, "delivered_at": delivery.delivered_at, "item_count": delivery.item_count,
            "event_types": event_types, "server_ids": server_ids, "subject": delivery.subject,
            "attempts": delivery.attempts, "last_error": delivery.last_error}

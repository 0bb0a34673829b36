"""Leases: work that must happen once (a replica's ownership of its tasks, a sweep, a schedule
firing) is held by one holder at a time through a row in the service's own ``leases`` table.

A lease has an expiry, set by the database's clock, that its holder renews well before it
passes; anyone may take a lease whose expiry has passed. The holder trusts its lease only
until ``ttl`` seconds after it *started* its last successful renewal (by its own monotonic
clock, so never later than the expiry others go by): ``held()`` is what the holder checks
before acting, and once it is False the holder stops the work the lease covers before
anyone else may take it. Unlike a session advisory lock, a lease does not vanish with a
database connection: a terminated backend costs one renewal at most, the next one
(re-)acquires it, and every loss and recovery is logged.
"""
import logging
import time
from datetime import datetime

from sqlalchemy import DateTime, String, delete, func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

log = logging.getLogger("steward.leases")


class LeaseLost(Exception):
    """The holder no longer holds its lease: it must stop the work the lease covers."""


class LeaseColumns:
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)  # what it covers: "replica:<holder>", a job
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    renewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Lease:
    """One lease, held (or wanted) by ``holder``: ``keep()`` takes or renews it, ``held()`` says whether to act."""

    def __init__(self, session_factory, model, name, holder, ttl, clock=time.monotonic):
        self.Session = session_factory
        self.model = model
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self.valid_until = None  # by self.clock: when this holder stops trusting the lease
        self.was_held = False
        self.lost_once = False

    def held(self):
        return self.valid_until is not None and self.clock() < self.valid_until

    def keep(self):
        """Take the lease if it is free, expired or ours, and push its expiry ``ttl`` on; True while it is held."""
        started = self.clock()
        try:
            taken = self._take()
        except SQLAlchemyError as exc:
            if self.held():
                log.warning("could not renew lease %s (%s); it stays valid for %.1f s", self.name,
                            exc.__class__.__name__, self.valid_until - self.clock(), extra=self._extra())
            taken = False
        else:
            if taken:
                self.valid_until = started + self.ttl
            elif self.valid_until is not None:
                self.valid_until = None  # another holder has it: whatever we believed, it is not ours
        now_held = self.held()
        if now_held and not self.was_held:
            if self.lost_once:
                log.warning("lease %s re-acquired by %s", self.name, self.holder, extra=self._extra())
            else:
                log.info("lease %s acquired by %s", self.name, self.holder, extra=self._extra())
        elif self.was_held and not now_held:
            self.lost_once = True
            log.warning("lease %s lost by %s: stopping the work it covers", self.name, self.holder, extra=self._extra())
        self.was_held = now_held
        return now_held

    def _take(self):
        table = self.model.__table__
        expires = func.now() + text(f"interval '{float(self.ttl)} seconds'")
        statement = (
            insert(table).values(name=self.name, holder=self.holder, expires_at=expires, renewed_at=func.now())
            .on_conflict_do_update(
                index_elements=[table.c.name],
                set_={"holder": self.holder, "expires_at": expires, "renewed_at": func.now()},
                where=(table.c.holder == self.holder) | (table.c.expires_at < func.now()),
            )
            .returning(table.c.holder)
        )
        with self.Session() as session:
            taken = session.execute(statement).scalar_one_or_none()
            session.commit()
            return taken == self.holder

    def release(self):
        """Give the lease up (on a clean stop), so others need not wait for it to expire. Never raises."""
        self.valid_until, self.was_held = None, False
        try:
            with self.Session() as session:
                session.execute(delete(self.model).where(self.model.name == self.name,
                                                         self.model.holder == self.holder))
                session.commit()
        except SQLAlchemyError as exc:
            log.warning("could not release lease %s (%s); it expires by itself", self.name, exc.__class__.__name__,
                        extra=self._extra())

    def _extra(self):
        return {"lease": self.name, "holder": self.holder}


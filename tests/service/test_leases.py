"""Leases on the real database: one holder at a time, taken over only once expired, kept through
terminated backends, and never trusted past the time others may take them."""
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from services.provisioner.models import Lease as LeaseRow
from shared.db import make_engine
from shared.leases import Lease


def _lease(engine, holder, ttl=30, clock=None):
    Session = sessionmaker(bind=engine, expire_on_commit=False)
    return Lease(Session, LeaseRow, "job:probe", holder, ttl, **({"clock": clock} if clock else {}))


def _expire(engine):
    with engine.begin() as connection:
        connection.execute(text("UPDATE provisioner.leases SET expires_at = now() - interval '1 second' "
                                "WHERE name = 'job:probe'"))


@pytest.fixture(autouse=True)
def no_probe_lease(engine):
    """Leases outlive a test (tests/conftest.py keeps them): each test here starts without its own."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM provisioner.leases WHERE name = 'job:probe'"))


def test_one_holder_at_a_time_and_a_lost_lease_is_noticed(engine, caplog):
    caplog.set_level(logging.INFO, "steward.leases")
    a, b = _lease(engine, "replica-a"), _lease(engine, "replica-b")
    assert a.keep() and a.held()
    assert not b.keep() and not b.held()  # a holds it and it has not expired
    assert a.keep()  # renewing
    _expire(engine)  # a stopped renewing (a long pause, a partition)
    assert b.keep() and b.held()
    assert not a.keep() and not a.held()
    assert "lease job:probe lost by replica-a" in caplog.text
    a.release()  # not a's to release: b keeps it
    assert b.keep()
    b.release()
    assert a.keep()
    assert "lease job:probe re-acquired by replica-a" in caplog.text


def test_the_holder_stops_trusting_its_lease_before_others_may_take_it(engine):
    now = [1000.0]
    lease = _lease(engine, "replica-a", ttl=30, clock=lambda: now[0])
    assert lease.keep()
    now[0] += 29.9
    assert lease.held()
    now[0] += 0.1  # no renewal since: the database's expiry is at least this far away, and we stop here
    assert not lease.held()


def test_a_lease_is_kept_through_terminated_backends(engine, settings, caplog):
    caplog.set_level(logging.INFO, "steward.leases")
    lease = _lease(engine, "replica-a")
    assert lease.keep()
    killer = make_engine(settings.database_url, pool_size=1)
    with killer.connect() as connection:
        killed = connection.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    killer.dispose()
    assert killed >= 1  # the lease's own pooled connection among them
    assert lease.keep() and lease.held()  # a fresh connection renews it: no session lock to lose
    assert "lost" not in caplog.text

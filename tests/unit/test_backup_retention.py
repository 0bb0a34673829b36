"""Retention over a simulated year of backups (injected times): restic's forget rules, exactly."""
from datetime import datetime, timedelta, timezone

from services.backup import retention


def year_of_backups():
    """Every 6 hours through 2025, from 00:00 on 1 January."""
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    return [{"id": i, "taken_at": start + timedelta(hours=6 * i)} for i in range(365 * 4)]


def kept_times(decision):
    return [b["taken_at"] for b, _ in decision.keep]


def test_a_year_keeps_exactly_the_newest_of_each_period():
    backups = year_of_backups()
    policy = {"keep_last": 2, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 3}
    decision = retention.apply(policy, backups)
    newest = datetime(2025, 12, 31, 18, tzinfo=timezone.utc)
    daily = {newest - timedelta(days=d) for d in range(7)}  # 18:00 of 25..31 December
    last = {newest, newest - timedelta(hours=6)}
    # ISO weeks: 2025-12-31 is in week 1 of 2026; then the Sundays 28, 21 and 14 December (18:00).
    weekly = {newest} | {datetime(2025, 12, d, 18, tzinfo=timezone.utc) for d in (28, 21, 14)}
    monthly = {datetime(2025, m, 1, 18, tzinfo=timezone.utc) - timedelta(days=1) for m in range(2, 13)} | {newest}
    yearly = {newest}
    assert set(kept_times(decision)) == last | daily | weekly | monthly | yearly
    assert len(decision.keep) + len(decision.remove) == len(backups)
    assert {b["id"] for b in decision.remove}.isdisjoint(b["id"] for b, _ in decision.keep)
    reasons = dict((b["taken_at"], r) for b, r in decision.keep)
    assert reasons[newest] == ["last 2", "daily 2025-12-31", "weekly 2026-1", "monthly 2025-12", "yearly 2025"]
    assert reasons[datetime(2025, 1, 31, 18, tzinfo=timezone.utc)] == ["monthly 2025-1"]


def test_the_order_given_does_not_matter_and_no_rule_keeps_everything():
    backups = year_of_backups()
    policy = {"keep_hourly": 10, "keep_monthly": 2}
    assert kept_times(retention.apply(policy, backups)) == kept_times(retention.apply(policy, list(reversed(backups))))
    assert len(retention.apply({}, backups).keep) == len(backups)


def test_keep_last_alone_keeps_the_newest_n():
    backups = year_of_backups()
    decision = retention.apply({"keep_last": 5}, backups)
    assert [b["id"] for b, _ in decision.keep] == [1459, 1458, 1457, 1456, 1455]

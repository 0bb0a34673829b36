"""Cron expressions of backup schedules: when they fire next, and what is refused."""
from datetime import datetime, timezone

import pytest

from services.backup.schedules import next_run
from shared.errors import ValidationFailed

T = datetime(2026, 11, 29, 23, 41, 30, tzinfo=timezone.utc)  # a Sunday


def at(*parts):
    return datetime(*parts, tzinfo=timezone.utc)


@pytest.mark.parametrize("cron, expected", [
    ("0 3 * * *", at(2026, 11, 30, 3, 0)),
    ("*/15 * * * *", at(2026, 11, 29, 23, 45)),
    ("41 23 * * *", at(2026, 11, 30, 23, 41)),  # strictly after: not the minute it is now
    ("0 0 1 * *", at(2026, 12, 1, 0, 0)),
    ("30 2 * * 1-5", at(2026, 11, 30, 2, 30)),  # Monday
    ("0 12 * * 0", at(2026, 12, 6, 12, 0)),  # next Sunday noon (today's has passed)
    ("0 12 * * 7", at(2026, 12, 6, 12, 0)),
    ("0 0 29 2 *", at(2028, 2, 29, 0, 0)),
    ("0 6 13 * 5", at(2026, 12, 4, 6, 0)),  # day 13 or a Friday, as cron does
])
def test_next_run(cron, expected):
    assert next_run(cron, T) == expected


@pytest.mark.parametrize("cron", ["* * * *", "60 * * * *", "0 24 * * *", "0 0 0 * *", "x * * * *", "0 0 31 2 *"])
def test_bad_expressions_are_refused(cron):
    with pytest.raises(ValidationFailed):
        next_run(cron, T)

"""Cron expressions (minute hour day-of-month month day-of-week, UTC) and their next firing.

Each field takes ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, and lists of
those. As in cron, when both day fields are restricted a day matching either one fires.
Day of week: 0 or 7 is Sunday.
"""
from datetime import datetime, timedelta

from sqlalchemy import select

from services.backup.models import Schedule
from shared.errors import ScheduleNotFound, ValidationFailed

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
HORIZON_DAYS = 366 * 5


def _field(text, name, low, high):
    values = set()
    for part in text.split(","):
        spec, _, step = part.partition("/")
        if spec == "*":
            start, end = low, high
        elif "-" in spec:
            start, _, end = spec.partition("-")
            start, end = int(start), int(end)
        else:
            start = end = int(spec)
        step = int(step) if step else 1
        if not (low <= start <= end <= high) or step < 1:
            raise ValueError(f"{name} {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


class Cron:
    def __init__(self, expression):
        parts = expression.split()
        if len(parts) != 5:
            raise ValidationFailed("a cron expression has five fields", {"cron": ["minute hour day month weekday"]})
        try:
            fields = [_field(p, *spec) for p, spec in zip(parts, FIELDS)]
        except ValueError as exc:
            raise ValidationFailed(f"bad cron expression: {exc}", {"cron": [str(exc)]}) from None
        self.minutes, self.hours, self.days, self.months, weekdays = fields
        self.weekdays = {d % 7 for d in weekdays}
        self.any_day = parts[2] == "*"
        self.any_weekday = parts[4] == "*"

    def _day_matches(self, day):
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, moment):
        """The first firing strictly after ``moment`` (an aware datetime)."""
        start = (moment + timedelta(minutes=1)).replace(second=0, microsecond=0)
        day = start.replace(hour=0, minute=0)
        for _ in range(HORIZON_DAYS):
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day = day + timedelta(days=1)
        raise ValidationFailed("this cron expression never fires", {"cron": ["never fires"]})


def next_run(expression, after: datetime):
    return Cron(expression).next_after(after)


class Schedules:
    """A backup server's schedules (rows of models.Schedule)."""

    def __init__(self, session_factory, clock):
        self.Session = session_factory
        self.clock = clock

    def create(self, data):
        schedule = Schedule(backup_server_id=data["backup_server_id"], kind=data["kind"], cron=data["cron"],
                            enabled=data["enabled"], next_run_at=next_run(data["cron"], self.clock()))
        with self.Session() as session:
            session.add(schedule)
            session.commit()
            return schedule_dict(schedule)

    def list(self):
        with self.Session() as session:
            return [schedule_dict(s) for s in session.scalars(select(Schedule).order_by(Schedule.id))]

    def delete(self, schedule_id):
        with self.Session() as session:
            schedule = session.get(Schedule, schedule_id)
            if schedule is None:
                raise ScheduleNotFound(f"no schedule with id {schedule_id}")
            session.delete(schedule)
            session.commit()


def schedule_dict(schedule):
    return {c: getattr(schedule, c) for c in ("id", "backup_server_id", "kind", "cron", "enabled", "next_run_at",
                                              "last_run_at", "last_task_id")}

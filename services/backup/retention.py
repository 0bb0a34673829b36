"""Which backups a retention policy keeps, and why: restic's ``forget`` rules.

Backups are taken newest first. ``keep_last`` keeps the N newest. Each of hourly, daily,
weekly (ISO weeks), monthly and yearly keeps the newest backup of each of its N most recent
periods that have one. A backup any rule keeps is kept, with every reason that keeps it.
The dry run is this very answer, so it lists exactly what prune then removes.
"""
from dataclasses import dataclass, field

BUCKETS = (
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: tuple(t.isocalendar())[:2]),
    ("monthly", lambda t: (t.year, t.month)),
    ("yearly", lambda t: (t.year,)),
)
RULES = ("keep_last",) + tuple(f"keep_{name}" for name, _ in BUCKETS)


@dataclass
class Decision:
    keep: list = field(default_factory=list)  # [(backup, [reason, ...])], newest first
    remove: list = field(default_factory=list)  # [backup], newest first


def apply(policy, backups, time_of=lambda b: b["taken_at"]):
    """``policy`` {keep_last, keep_hourly, ...: count}; ``backups`` any order. An empty policy keeps all."""
    ordered = sorted(backups, key=time_of, reverse=True)
    if not any(policy.get(rule) for rule in RULES):
        return Decision(keep=[(b, ["no retention rule"]) for b in ordered])
    remaining = {name: int(policy.get(f"keep_{name}") or 0) for name, _ in BUCKETS}
    last_period = {name: None for name, _ in BUCKETS}
    decision = Decision()
    for position, backup in enumerate(ordered):
        reasons = []
        if position < int(policy.get("keep_last") or 0):
            reasons.append(f"last {policy['keep_last']}")
        taken_at = time_of(backup)
        for name, period_of in BUCKETS:
            period = period_of(taken_at)
            if remaining[name] > 0 and period != last_period[name]:
                last_period[name] = period
                remaining[name] -= 1
                reasons.append(f"{name} {'-'.join(str(p) for p in period)}")
        if reasons:
            decision.keep.append((backup, reasons))
        else:
            decision.remove.append(backup)
    return decision

"""Rules: which events (type, severity), about which servers, go to which channels."""
from sqlalchemy import select

from services.notifier.channels import flush_unique
from services.notifier.models import Channel, Rule
from shared.errors import RuleNotFound, ValidationFailed
from shared.schemas.notifier import SEVERITIES

SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


def rule_matches(rule, event_type, severity, server_id, server_name):
    if not rule.enabled:
        return False
    if rule.event_types and event_type not in rule.event_types:
        return False
    if SEVERITY_RANK[severity] < SEVERITY_RANK[rule.min_severity]:
        return False
    if rule.server_ids and server_id not in rule.server_ids:
        return False
    if rule.server_search and rule.server_search.lower() not in (server_name or "").lower():
        return False
    return True


class Rules:
    def __init__(self, session):
        self.session = session

    def list(self):
        return self.session.scalars(select(Rule).order_by(Rule.id)).all()

    def get(self, rule_id):
        rule = self.session.get(Rule, rule_id)
        if rule is None:
            raise RuleNotFound(f"no rule {rule_id}")
        return rule

    def create(self, data):
        rule = Rule()
        self._apply(rule, data)
        self.session.add(rule)
        flush_unique(self.session, "rule", rule.name)
        return rule

    def update(self, rule_id, changes):
        rule = self.get(rule_id)
        self._apply(rule, changes)
        flush_unique(self.session, "rule", rule.name)
        return rule

    def delete(self, rule_id):
        self.session.delete(self.get(rule_id))

    def channels_for(self, event_type, severity, server_id, server_name):
        """Enabled channels that some enabled rule sends this event to, by id."""
        channels = {}
        for rule in self.session.scalars(select(Rule).where(Rule.enabled)):
            if rule_matches(rule, event_type, severity, server_id, server_name):
                channels.update((c.id, c) for c in rule.channels if c.enabled)
        return [channels[key] for key in sorted(channels)]  # one lock order for every replica

    def _apply(self, rule, data):
        for key in ("name", "enabled", "event_types", "min_severity", "server_ids", "server_search"):
            if key in data:
                setattr(rule, key, data[key])
        if "channel_ids" in data:
            wanted = set(data["channel_ids"])
            found = self.session.scalars(select(Channel).where(Channel.id.in_(wanted))).all()
            missing = wanted - {c.id for c in found}
            if missing:
                raise ValidationFailed("invalid rule", {"channel_ids": [f"no channel {i}" for i in sorted(missing)]})
            rule.channels = sorted(found, key=lambda c: c.id)


def rule_dict(rule):
    return {"id": rule.id, "name": rule.name, "enabled": rule.enabled, "event_types": rule.event_types,
            "min_severity": rule.min_severity, "server_ids": rule.server_ids, "server_search": rule.server_search,
            "channel_ids": [c.id for c in rule.channels], "created_at": rule.created_at}

"""Admin settings: stored per section, secrets sealed, dumped without them."""
from sqlalchemy import select

from services.inventory.models import SettingsSection
from shared.schemas.settings import SECTIONS

# Secret fields per section: stored sealed, shown only as "<name>_set".
SECRETS = {"rabbitmq": ("password",), "backup": ("password",)}
TOKEN_COMPONENTS = ("dns", "dhcp", "monitor")


class AdminSettings:
    def __init__(self, session, secret_box):
        self.session = session
        self.box = secret_box

    def _stored(self):
        return {row.section: row for row in self.session.scalars(select(SettingsSection))}

    def _defaults(self, section):
        return SECTIONS[section]().load({})

    def effective(self, reveal=False):
        """Every section with defaults filled in; secrets opened only when ``reveal``."""
        stored = self._stored()
        result = {}
        for section in SECTIONS:
            values = dict(self._defaults(section), **(stored[section].values if section in stored else {}))
            result[section] = self._present(section, values, reveal)
        return result

    def _present(self, section, values, reveal):
        values = dict(values)
        for secret in SECRETS.get(section, ()):
            sealed = values.pop(secret, None)
            values[f"{secret}_set"] = bool(sealed)
            if reveal:
                values[secret] = self.box.open(sealed)
        if section == "update":
            sealed_tokens = values.pop("repository_tokens", None) or {}
            values["repository_tokens_set"] = {c: bool(sealed_tokens.get(c)) for c in TOKEN_COMPONENTS}
            if reveal:
                values["repository_tokens"] = {c: self.box.open(t) for c, t in sealed_tokens.items() if t}
        return values

    def update(self, patch):
        """Apply a validated patch ({section: {field: value}}); returns the sections changed."""
        stored = self._stored()
        for section, changes in patch.items():
            row = stored.get(section)
            values = dict(row.values) if row else {}
            for field, value in changes.items():
                if field in SECRETS.get(section, ()):
                    values[field] = self.box.seal(value) if value else None
                elif section == "update" and field == "repository_tokens":
                    tokens = dict(values.get("repository_tokens") or {})
                    for component, token in value.items():
                        tokens[component] = self.box.seal(token) if token else None
                    values["repository_tokens"] = tokens
                else:
                    values[field] = value
            if row is None:
                self.session.add(SettingsSection(section=section, values=values))
            else:
                row.values = values
        self.session.flush()
        return sorted(patch)

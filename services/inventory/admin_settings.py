"""Admin settings: stored per section, secrets sealed, dumped without them."""
from sqlalchemy import select

from services.inventory.models import SettingsSection
from shared.components import INSTALLABLE
from shared.schemas.settings import SECTIONS

# Secret fields per section: stored sealed, shown only as "<name>_set".
SECRETS = {"rabbitmq": ("password",), "backup": ("password",)}


class AdminSettings:
    def __init__(self, session, secret_box, defaults=None):
        self.session = session
        self.box = secret_box
        self.defaults = defaults or {}  # per section: what the environment says where nothing is stored

    def _stored(self):
        return {row.section: row for row in self.session.scalars(select(SettingsSection))}

    def _defaults(self, section):
        return dict(SECTIONS[section]().load({}), **self.defaults.get(section, {}))

    def _values(self, section, stored=None):
        stored = self._stored() if stored is None else stored
        return dict(self._defaults(section), **(stored[section].values if section in stored else {}))

    def effective(self):
        """Every section with defaults filled in, its secrets only as ``*_set`` flags."""
        stored = self._stored()
        return {section: self._present(section, self._values(section, stored)) for section in SECTIONS}

    def _present(self, section, values):
        for secret in SECRETS.get(section, ()):
            values[f"{secret}_set"] = bool(values.pop(secret, None))
        if section == "update":
            sealed_tokens = values.pop("repository_tokens", None) or {}
            values["repository_tokens_set"] = {c: bool(sealed_tokens.get(c)) for c in INSTALLABLE}
        return values

    def secret(self, section, name):
        """One stored secret of a section in plain text (None when unset): to use here, or to seal for a caller."""
        return self.box.open(self._values(section).get(name))

    def repository_tokens(self):
        """{component: token} of the components that have one, in plain text."""
        tokens = self._values("update").get("repository_tokens") or {}
        return {component: self.box.open(token) for component, token in tokens.items() if token}

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

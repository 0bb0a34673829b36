"""One settings object per process, read from YAML with ``${ENV:default}`` substitution.

The same file configures every process (services, gateway, tools); each takes
the sections it needs. nameko reads its own keys (``AMQP_URI``, ...) from the
same mapping, so the loaded dict is handed to nameko unchanged.
"""
import os
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = ROOT / "config" / "steward.yaml"

# Every Steward service: a package services/<name>/ with service.py, run as
# `python -m services.<name>`, owning the database schema of that name.
SERVICES = tuple(sorted(p.parent.name for p in (ROOT / "services").glob("*/service.py")))

# ${NAME} or ${NAME:default}; the default may be empty or hold any character but '}'.
_ENV_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<default>[^}]*))?\}")


class ConfigError(Exception):
    pass


def substitute_env(text, environ=None):
    environ = os.environ if environ is None else environ

    def replace(match):
        name, default = match.group("name"), match.group("default")
        if name in environ:
            return environ[name]
        if default is None:
            raise ConfigError(f"environment variable {name} is not set and has no default")
        return default

    return _ENV_PATTERN.sub(replace, text)


class Settings(dict):
    """The loaded configuration: a dict (what nameko wants) with typed accessors."""

    @property
    def amqp_uri(self):
        return self["AMQP_URI"]

    @property
    def database_url(self):
        return self["DATABASE_URL"]

    @property
    def secret_key(self):
        return self["SECRET_KEY"]

    def section(self, name):
        return self.get(name) or {}


def load_settings(path=None, environ=None, overrides=None):
    path = Path(path or os.environ.get("STEWARD_CONFIG") or DEFAULT_PATH)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from exc
    data = yaml.safe_load(substitute_env(text, environ)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"configuration {path} must be a mapping")
    data.update(overrides or {})
    for key in ("AMQP_URI", "DATABASE_URL", "SECRET_KEY"):
        if not data.get(key):
            raise ConfigError(f"configuration {path} lacks {key}")
    return Settings(data)

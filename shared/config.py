"""One configuration file for every process, read the way nameko's runner reads it.

``config/steward.yaml`` (or ``$STEWARD_CONFIG``) configures the services (which
nameko's own runner loads: ``nameko run --config``), the gateway and the tools
alike: nameko's YAML loader substitutes ``${NAME:default}`` in plain scalars and
in ``!env_var`` / ``!raw_env_var`` tagged ones, and ``LOGGING`` is a
``logging.config`` dictionary. Each process takes the sections it needs.

The services themselves are found through the ``steward.services`` entry points
that each one registers in pyproject.toml (installed by ``make install``), so
nothing in shared/ names them.
"""
import os
import socket
import sys
from importlib.metadata import entry_points
from pathlib import Path
from unittest import mock
from urllib.parse import unquote, urlsplit

import yaml
from nameko.cli.main import setup_yaml_parser

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATH = ROOT / "config" / "steward.yaml"
SERVICE_ENTRY_POINTS = "steward.services"
DEFAULT_BIND = "127.0.0.1:8080"  # where the gateway listens unless STEWARD_BIND says otherwise


class ConfigError(Exception):
    pass


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


def config_path(path=None):
    return Path(path or os.environ.get("STEWARD_CONFIG") or DEFAULT_PATH)


def load_settings(path=None, environ=None, overrides=None):
    """The configuration as nameko's runner loads it. ``environ`` replaces the process
    environment while the file is read (tests read the file for another database)."""
    path = config_path(path)
    setup_yaml_parser()  # nameko's ${NAME:default} loader (idempotent)
    try:
        with mock.patch.dict(os.environ, environ or {}, clear=environ is not None):
            data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"configuration {path} must be a mapping")
    data.update(overrides or {})
    for key in ("AMQP_URI", "DATABASE_URL", "SECRET_KEY"):
        if not data.get(key):
            raise ConfigError(f"configuration {path} lacks {key} (is its environment variable set?)")
    return Settings(data)


def public_url(config, environ=None):
    """Where the API is reached from outside (bundles, links in notifications): ``PUBLIC_URL`` when it is
    set, else the gateway's own address, ``STEWARD_BIND`` (a wildcard bind is named by this host's name)."""
    if config.get("PUBLIC_URL"):
        return config["PUBLIC_URL"].rstrip("/")
    host, _, port = (environ if environ is not None else os.environ).get("STEWARD_BIND", DEFAULT_BIND).rpartition(":")
    if host.strip("[]") in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"http://{host}:{port}"


def amqp_vhost(amqp_uri):
    """The virtual host an AMQP URI names ("/" when it names none)."""
    return unquote(urlsplit(amqp_uri).path[1:]) or "/"


def registered_services():
    """{name: "module:Class"} of every installed Steward service, by name."""
    found = {ep.name: ep.value for ep in entry_points(group=SERVICE_ENTRY_POINTS)}
    if not found:
        raise ConfigError(f"no Steward service is registered ({SERVICE_ENTRY_POINTS} entry points): "
                          "install the project first (make install, or pip install -e .)")
    return dict(sorted(found.items()))


def _service_entry_point(name):
    found = entry_points(group=SERVICE_ENTRY_POINTS, name=name)
    if not found:
        raise ConfigError(f"no service named {name} is registered")
    return next(iter(found))


def service_class(name):
    """A registered service's nameko class (imports its module)."""
    return _service_entry_point(name).load()


def run_service(package, argv=None):
    """``python -m services.<name>``: nameko's own runner, ``nameko run --config <file>
    <module>:<Class>`` for the class registered under ``<name>``, with this process named
    ``<name>`` in its logs.

    The class is named, not just the module: nameko would otherwise take every class in the
    module that has entrypoints for a service, mixins such as TaskQueries included."""
    from nameko.cli.main import main

    name = package.rsplit(".", 1)[-1]
    os.environ["STEWARD_PROCESS"] = name
    argv = sys.argv[1:] if argv is None else argv
    sys.argv = ["nameko", "run", "--config", str(config_path()), _service_entry_point(name).value, *argv]
    return main()

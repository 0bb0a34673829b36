"""The agent's one configuration file (JSON, written by the setup bundle); keys in agent/README.md."""
import json
import os

PUSH = "push"
PULL = "pull"

DEFAULTS = {
    "monitoring_url": None,
    "verify_ca": None,
    "communication_type": PUSH,
    "rabbitmq": {},
    "heartbeat_interval_seconds": 30.0,
    "system_interval_seconds": 60.0,
    "dns_interval_seconds": 60.0,
    "dnstap_socket": "/run/steward-agent/dnstap.sock",
    "spool_dir": "/var/lib/steward-agent",
    "spool_max_messages": 100000,
    "pull_listen": "0.0.0.0",
    "pull_port": 8741,
    "components_file": "/provision/state/components.json",
    "http_timeout_seconds": 10.0,
}
RABBITMQ_DEFAULTS = {"host": "127.0.0.1", "port": 5672, "user": "guest", "password": "", "vhost": "/", "tls": False, "ca": None}
REQUIRED = ("server_id", "agent_token")


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or has a wrong key."""


class AgentConfig:
    """Typed view of the configuration file; every key is an attribute."""

    def __init__(self, values):
        missing = [key for key in REQUIRED if not values.get(key)]
        if missing:
            raise ConfigError("missing keys: %s" % ", ".join(missing))
        unknown = sorted(set(values) - set(DEFAULTS) - set(REQUIRED))
        if unknown:
            raise ConfigError("unknown keys: %s" % ", ".join(unknown))
        merged = dict(DEFAULTS, **values)
        if merged["communication_type"] not in (PUSH, PULL):
            raise ConfigError("communication_type must be 'push' or 'pull'")
        rabbitmq = dict(RABBITMQ_DEFAULTS, **(merged["rabbitmq"] or {}))
        try:
            self.server_id = int(merged["server_id"])
            self.agent_token = str(merged["agent_token"])
            self.monitoring_url = merged["monitoring_url"].rstrip("/") if merged["monitoring_url"] else None
            self.verify_ca = merged["verify_ca"]
            if self.verify_ca is not None and not isinstance(self.verify_ca, (bool, str)):
                raise ValueError("verify_ca must be true, false or the path of a PEM file")
            self.communication_type = merged["communication_type"]
            self.rabbitmq = rabbitmq
            self.rabbitmq["port"] = int(rabbitmq["port"])
            self.heartbeat_interval = float(merged["heartbeat_interval_seconds"])
            self.system_interval = float(merged["system_interval_seconds"])
            self.dns_interval = float(merged["dns_interval_seconds"])
            self.dnstap_socket = merged["dnstap_socket"]
            self.spool_dir = merged["spool_dir"]
            self.spool_max_messages = int(merged["spool_max_messages"])
            self.pull_listen = merged["pull_listen"]
            self.pull_port = int(merged["pull_port"])
            self.components_file = merged["components_file"]
            self.http_timeout = float(merged["http_timeout_seconds"])
        except (TypeError, ValueError, AttributeError) as error:
            raise ConfigError("bad value: %s" % error)
        if min(self.heartbeat_interval, self.system_interval, self.dns_interval) <= 0:
            raise ConfigError("intervals must be positive")
        if self.spool_max_messages < 1:
            raise ConfigError("spool_max_messages must be at least 1")

    @property
    def spool_path(self):
        return os.path.join(self.spool_dir, "spool.sqlite3")


def load_config(path):
    try:
        with open(path) as handle:
            values = json.load(handle)
    except (OSError, ValueError) as error:
        raise ConfigError("cannot read %s: %s" % (path, error))
    if not isinstance(values, dict):
        raise ConfigError("%s must hold a JSON object" % path)
    return AgentConfig(values)

"""The configuration file, read by nameko's own YAML loader as nameko's runner reads it."""
import io
import json
import logging
import re

import pytest

from shared.config import DEFAULT_PATH, ConfigError, amqp_vhost, load_settings, public_url
from shared.logs import JsonFormatter, configure_logging

CORE = 'AMQP_URI: amqp://x\nDATABASE_URL: postgresql://x/y\nSECRET_KEY: !raw_env_var "${KEY}"\n'


def _load(tmp_path, text, environ):
    path = tmp_path / "c.yaml"
    path.write_text(CORE + text)
    return load_settings(path, environ=dict(environ, KEY="k"))


def test_environment_defaults_and_types(tmp_path):
    settings = _load(tmp_path, 'a: ${A}\nb: ${B:fallback}\nc: ${C:}\nn: ${N:10}\nraw: !raw_env_var "${R:007}"\n',
                     {"A": "x"})
    assert (settings["a"], settings["b"], settings["c"]) == ("x", "fallback", None)
    assert settings["n"] == 10 and settings["raw"] == "007"


def test_a_raw_value_is_kept_as_it_is(tmp_path):
    settings = _load(tmp_path, 'url: !raw_env_var "db://u:${P}@h"\n', {"P": "p#1: x"})
    assert settings["url"] == "db://u:p#1: x@h"


def test_a_missing_secret_key_is_a_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CORE)
    with pytest.raises(ConfigError, match="lacks SECRET_KEY"):
        load_settings(path, environ={})


def test_project_config_loads_with_environment():
    settings = load_settings(environ={"STEWARD_SECRET_KEY": "k", "STEWARD_DB_NAME": "other", "STEWARD_AMQP_VHOST": "v",
                                      "STEWARD_RPC_TIMEOUT": "2.5"})
    assert settings.database_url.endswith("/other")
    assert settings.amqp_uri.endswith("/v")
    assert settings.secret_key == "k"
    assert settings["max_workers"] == 10 and settings["RPC_TIMEOUT_SECONDS"] == 2.5


def _strings(value):
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_every_variable_in_the_project_config_is_substituted():
    # nameko's loader leaves a quoted "${...}" alone unless it is tagged !raw_env_var (or !env_var).
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", DEFAULT_PATH.read_text()))
    settings = load_settings(environ={name: "1" for name in names})
    assert [value for value in _strings(settings) if "${" in value] == []


def test_logging_from_the_configuration_names_the_process(monkeypatch):
    settings = load_settings(environ={"STEWARD_SECRET_KEY": "k", "STEWARD_LOG_LEVEL": "WARNING"})
    monkeypatch.setenv("STEWARD_PROCESS", "before")  # restored after the test
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(settings, "gateway")
        assert root.level == logging.WARNING
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        stream = io.StringIO()
        handler.setStream(stream)
        logging.getLogger("steward.test").warning("hello %s", "there")
        entry = json.loads(stream.getvalue())
        assert (entry["process"], entry["message"], entry["level"]) == ("gateway", "hello there", "WARNING")
    finally:
        root.handlers[:], root.level = handlers, level


def test_the_public_url_follows_the_gateways_bind_address_unless_it_is_set():
    environ = {"STEWARD_SECRET_KEY": "k", "STEWARD_BIND": "127.0.0.1:9123"}
    assert public_url(load_settings(environ=environ), environ) == "http://127.0.0.1:9123"
    assert public_url(load_settings(environ={"STEWARD_SECRET_KEY": "k"}), {}) == "http://127.0.0.1:8080"
    explicit = dict(environ, STEWARD_PUBLIC_URL="https://steward.example.com/")
    assert public_url(load_settings(environ=explicit), explicit) == "https://steward.example.com"


def test_the_amqp_vhost_is_read_from_the_uri():
    assert amqp_vhost(load_settings(environ={"STEWARD_SECRET_KEY": "k"}).amqp_uri) == "/"
    stack = load_settings(environ={"STEWARD_SECRET_KEY": "k", "STEWARD_AMQP_VHOST": "second"})
    assert amqp_vhost(stack.amqp_uri) == "second"

import pytest

from shared.config import ConfigError, load_settings, substitute_env


def test_substitutes_environment_and_defaults():
    text = "a: ${A}\nb: ${B:fallback}\nc: ${C:}\n"
    assert substitute_env(text, {"A": "x"}) == "a: x\nb: fallback\nc: \n"


def test_environment_wins_over_default():
    assert substitute_env("${B:fallback}", {"B": "set"}) == "set"


def test_missing_variable_without_default_is_a_clear_error():
    with pytest.raises(ConfigError, match="NOPE is not set"):
        substitute_env("${NOPE}", {})


def test_settings_need_the_core_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("AMQP_URI: amqp://x\nDATABASE_URL: postgresql://x/y\n")
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_settings(path, environ={})


def test_project_config_loads_with_environment(tmp_path):
    settings = load_settings(environ={"STEWARD_SECRET_KEY": "k", "STEWARD_DB_NAME": "other", "STEWARD_AMQP_VHOST": "v"})
    assert settings.database_url.endswith("/other")
    assert settings.amqp_uri.endswith("/v")
    assert settings.secret_key == "k"
    assert settings["max_workers"] == 10

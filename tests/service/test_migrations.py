"""Models and migrations agree, and every migration goes down and up again."""
from shared.config import registered_services
from shared.migrations import downgrade, drift, upgrade


def test_models_match_migrations(settings):
    for service in registered_services():
        assert drift(settings.database_url, service) == []


def test_migrations_downgrade_and_upgrade(settings):
    for service in registered_services():
        downgrade(settings.database_url, service, "base")
        upgrade(settings.database_url, [service])
        assert drift(settings.database_url, service) == []

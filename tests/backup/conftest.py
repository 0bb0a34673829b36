"""The backup service in a real container on the real broker and database, a real backup-server
daemon (its own process on 127.0.0.1) enrolled as a backup server, and the real restic."""
import pytest

from tests.backup.daemon_lab import enrolled_daemon
from tests.events import capture_events

BACKUP_PASSWORD = "correct horse battery staple"


@pytest.fixture
def backup_service(start_service, tmp_path):
    from services.backup.service import BackupService

    return start_service(BackupService, {"backup": {"restic_cache_dir": str(tmp_path / "restic-cache"), "pool_size": 2},
                                         "database": {"pool_size": 2}})


@pytest.fixture
def backup_events(settings):
    with capture_events(settings, "backup") as drain:
        yield drain


def set_backup_password(rpc, admin, password):
    rpc.call("inventory", "update_settings", admin, {"backup": {"password": password}})


@pytest.fixture
def backup_server(rpc, admin, settings, tmp_path, backup_service):
    """(backup server as the API shows it, the daemon): a managed server with the backup component."""
    set_backup_password(rpc, admin, BACKUP_PASSWORD)
    server = rpc.call("inventory", "create_server", admin, {"name": "backup-1", "address": "127.0.0.1", "os": "ubuntu",
                                                            "components": ["backup"], "ssh_password": "unused"})
    with enrolled_daemon(settings.secret_key, server["id"], tmp_path / "daemon") as daemon:
        registered = rpc.call("backup", "create_backup_server", admin, {"server_id": server["id"], "port": daemon.port})
        yield registered, daemon


# The real gateway over real HTTP, for the CLI (the gateway tier's fixtures).
from tests.gateway.conftest import api_url, app  # noqa: E402,F401

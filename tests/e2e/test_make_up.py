"""Tried as a new user would: `make up`, create a server with the CLI, list it
through the API, `make down`."""
import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from scripts.sandbox import drop_database

ROOT = Path(__file__).resolve().parents[2]
PORT = 18080


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def stack_env(tmp_path):
    drop_database("steward_e2e")
    env = dict(
        os.environ,
        STEWARD_STATE_DIR=str(tmp_path / "state"),
        STEWARD_DB_NAME="steward_e2e",
        STEWARD_AMQP_VHOST="steward_e2e",
        STEWARD_BIND=f"127.0.0.1:{PORT}",
    )
    env.pop("STEWARD_SECRET_KEY", None)
    env.pop("STEWARD_URL", None)
    env.pop("STEWARD_TOKEN", None)
    yield env
    subprocess.run(["make", "-s", "down"], cwd=ROOT, env=env, capture_output=True, timeout=120)


@pytest.mark.e2e
def test_make_up_cli_create_api_list_make_down(stack_env, tmp_path):
    up = subprocess.run(["make", "-s", "up"], cwd=ROOT, env=stack_env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"API URL:     http://127.0.0.1:{PORT}/api/v2" in up.stdout
    token_file = tmp_path / "state" / "admin-token"
    token = token_file.read_text().strip()
    assert f"Admin token: {token}" in up.stdout
    assert token_file.stat().st_mode & 0o777 == 0o600

    created = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "steward"), "servers", "create", "--name", "first-dns", "--address", "192.0.2.53", "--os", "ubuntu"],
        cwd=tmp_path, env=stack_env, capture_output=True, text=True, timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert "created server first-dns" in created.stdout

    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/api/v2/servers?search=first",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        page = json.load(response)
    assert page["total"] == 1
    assert page["items"][0]["name"] == "first-dns" and page["items"][0]["requests_status"] == "red"

    down = subprocess.run(["make", "-s", "down"], cwd=ROOT, env=stack_env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert "stopped gateway" in down.stdout and "stopped inventory" in down.stdout
    assert not _port_open(PORT)
    assert not list((tmp_path / "state" / "run").glob("*.pid"))

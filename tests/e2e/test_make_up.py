"""Tried as a new user would: `make up`, create a server with the CLI, list it
through the API, `make down`."""
import json
import socket
import subprocess
import urllib.request

import pytest

from tests.stack import ROOT, stack_env as local_stack, stack_name, stack_port

PORT = stack_port(stack_name("e2e"))


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def stack_env(tmp_path):
    with local_stack("e2e", tmp_path / "state") as env:
        yield env


@pytest.mark.e2e
def test_make_up_cli_create_api_list_make_down(stack_env, tmp_path):
    up = subprocess.run(["make", "-s", "up"], cwd=ROOT, env=stack_env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"API URL:     http://127.0.0.1:{PORT}/api/v2" in up.stdout
    token_file = tmp_path / "state" / "admin-token"
    token = token_file.read_text().strip()
    assert f"Admin token: {token}" in up.stdout
    assert token_file.stat().st_mode & 0o777 == 0o600
    # The web console: its page at /, and admin signs in with the password make up wrote (mode 0600).
    password_file = tmp_path / "state" / "admin-password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert f"Console:     http://127.0.0.1:{PORT}/" in up.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/", timeout=10) as response:
        assert "/console/static/app.js" in response.read().decode()
    sign_in = urllib.request.Request(
        f"http://127.0.0.1:{PORT}/api/v2/session", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"name": "admin", "password": password_file.read_text().strip()}).encode())
    with urllib.request.urlopen(sign_in, timeout=10) as response:
        assert "steward_session=" in response.headers["Set-Cookie"]

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

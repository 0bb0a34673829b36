"""Every service, started as operators and orchestrators start it (``python -m services.<name>``),
stops cleanly on SIGTERM: it finishes what it runs and exits 0 within its grace period."""
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from scripts.sandbox import ensure_vhost
from shared.config import registered_services
from shared.errors import ServiceUnavailable
from shared.rpc import RpcClient
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 30  # Kubernetes' default terminationGracePeriodSeconds


def _answers(client, name):
    try:
        return client.call(name, "health", timeout=2) == {"service": name, "database": "ok"}
    except ServiceUnavailable:
        return False


@pytest.fixture
def vhost(settings):
    """A vhost of the test's own: the health checks must reach the processes, not the test's containers."""
    name = f"{os.environ.get('STEWARD_TEST_VHOST', 'steward_test')}_sigterm"
    ensure_vhost(name)
    return name


def test_every_service_stops_cleanly_on_sigterm(settings, vhost, tmp_path):
    env = dict(os.environ, STEWARD_SECRET_KEY="test-secret-key", STEWARD_AMQP_VHOST=vhost,
               STEWARD_DB_NAME=os.environ.get("STEWARD_TEST_DB", "steward_test"))
    processes = {}
    for name in registered_services():
        log = open(tmp_path / f"{name}.log", "wb")
        processes[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = RpcClient(settings.amqp_uri.rsplit("/", 1)[0] + f"/{vhost}", caller=f"sigterm-{uuid.uuid4().hex[:6]}")
    try:
        for name in processes:  # consuming: each answers an RPC
            wait_for(lambda: _answers(client, name), timeout=120, what=f"{name} to answer")
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            status = process.wait(GRACE_SECONDS)
            log = (tmp_path / f"{name}.log").read_text()
            # (A worker still waiting on a service that stopped first may log its timeout; it still ends.)
            assert status == 0 and f"stopping services: {name}" in log, f"{name} exited with {status}:\n{log[-3000:]}"
    finally:
        client.close()
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

"""The gateway under gunicorn as `make up` runs it, for the tests that need its worker (gateway/worker.py)."""
import contextlib
import subprocess
import sys
import urllib.request
from types import SimpleNamespace

from tests.ports import free_port
from tests.stack import ROOT
from tests.waiting import wait_for


def _answers(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/openapi.json", timeout=2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def served_gateway(env, log_path):
    """gunicorn with ``env`` on a free port of 127.0.0.1 until the block ends: (port, process). Its output goes
    to ``log_path``, which a start that fails shows."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gateway" / "gunicorn.conf.py"),
                                    "gateway.app:get_app()"], cwd=ROOT, env=dict(env, STEWARD_BIND=f"127.0.0.1:{port}"),
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: process.poll() is not None or _answers(port), timeout=60, what="gunicorn to answer")
            assert process.poll() is None, log_path.read_text()
            yield SimpleNamespace(port=port, process=process)
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)

"""The compose stack for the module, and the figures it measured, printed at the end of the run."""
import os
import time

import pytest

from tests.compose.stack import Stack, prepare_images
from tests.waiting import wait_for

FIGURES = []


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("compose stack figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def figures():
    return FIGURES.append


@pytest.fixture(scope="module")
def stack(figures):
    """docker-compose.yml (+ the local override) built and up from nothing; removed with its volumes after."""
    timings = prepare_images()
    stack = Stack(f"steward-{os.environ.get('STEWARD_TEST_DB', 'steward_test')}")
    stack.compose("down", "-v", "--remove-orphans", check=False)
    started = time.monotonic()
    stack.compose("build", "-q")
    timings["compose build"] = time.monotonic() - started
    started = time.monotonic()
    try:
        stack.compose("up", "-d", "--quiet-pull", timeout=900)
        timings["compose up (services started)"] = time.monotonic() - started
        figures("preparation: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))
        stack.admin_token = stack.compose("run", "--rm", "migrate", "admin-token").stdout.strip().splitlines()[-1]
        yield stack
    except Exception:
        print(stack.compose("logs", "--tail", "40", check=False).stdout[-20000:])
        raise
    finally:
        stack.compose("down", "-v", "--remove-orphans", "-t", "30", check=False)


@pytest.fixture
def all_healthy(stack):
    """Waits until every long-running container of the stack is healthy again (after a test killed some)."""
    def check():
        states = {name: stack.health(name) for name in stack.containers() if "_migrate_" not in name}
        return all(state in ("healthy", "running") for state in states.values()) and states
    # 300 s: on an idle machine the stack is healthy 93 s after `up`; health checks time out under heavy load.
    return lambda timeout=300: wait_for(check, timeout=timeout, interval=1, what="every container healthy")

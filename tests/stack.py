"""`make up` stacks for tests: each in a database, vhost, state directory and port of its own, derived from the
run's STEWARD_TEST_DB, so two test runs on one machine never share one."""
import contextlib
import os
import subprocess
from pathlib import Path

from scripts.sandbox import drop_database

ROOT = Path(__file__).resolve().parents[1]


def stack_name(suffix):
    return os.environ.get("STEWARD_TEST_DB", "steward_test") + f"_{suffix}"


def stack_port(name):
    return 18080 + sum(name.encode()) % 1000


@contextlib.contextmanager
def stack_env(suffix, state_dir, **settings):
    """The environment `make up` and `make down` run with; whatever it started is stopped on the way out."""
    name = stack_name(suffix)
    drop_database(name)
    env = dict(os.environ, STEWARD_STATE_DIR=str(state_dir), STEWARD_DB_NAME=name, STEWARD_AMQP_VHOST=name,
               **{"STEWARD_BIND": f"127.0.0.1:{stack_port(name)}", **settings})
    for inherited in ("STEWARD_SECRET_KEY", "STEWARD_URL", "STEWARD_TOKEN"):
        env.pop(inherited, None)
    try:
        yield env
    finally:
        subprocess.run(["make", "-s", "down"], cwd=ROOT, env=env, capture_output=True, timeout=120)

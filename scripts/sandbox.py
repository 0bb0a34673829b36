"""A database and a RabbitMQ vhost of their own, for a test run or a benchmark.

The tests, the end-to-end `make up` test and the benchmarks each work in
their own, so none of them disturbs a running `make up` stack or another.
Local PostgreSQL (trust auth) and RabbitMQ (rabbitmqctl) only: this is
developer tooling, not something the stack itself runs.
"""
import subprocess
import time

import psycopg2
import requests


def drop_database(name, recreate=False):
    """Drop ``name`` (closing whatever is connected to it) and, with ``recreate``, create it empty."""
    connection = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if recreate:
            cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


def ensure_vhost(vhost, user="guest", recreate=False):
    """The vhost, made if missing; with ``recreate``, deleted first, so no queue keeps an earlier run's messages."""
    if recreate:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"], check=True,
                   capture_output=True)


def wait_for_management_api(base="http://127.0.0.1:15672/api", user="guest", password="guest", seconds=20.0):
    """The local broker's management API answering ``/whoami``, its plugin enabled (again every 5 s) while it does not,
    as `make up` enables it. ``/whoami``, not ``/overview``: RabbitMQ 3.10.8's node statistics collector can die for
    good (rabbitmq-server#6097), after which ``/overview`` and ``/queues`` answer 500 while users, permissions and
    connections, all that Steward uses, still work. Enabling only while it does not answer: a CLI run beside
    another can fail (exit 65)."""
    deadline, enable_at, said = time.monotonic() + seconds, 0.0, ""
    while True:
        try:
            if requests.get(f"{base}/whoami", auth=(user, password), timeout=5).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            raise RuntimeError(f"RabbitMQ's management API at {base} did not come up; "
                               f"rabbitmq-plugins enable rabbitmq_management said: {said}")
        if time.monotonic() >= enable_at:
            enabling = subprocess.run(["rabbitmq-plugins", "enable", "--quiet", "rabbitmq_management"],
                                      capture_output=True, text=True)
            said = (enabling.stderr or enabling.stdout).strip()[-500:]
            enable_at = time.monotonic() + 5.0
        time.sleep(0.1)

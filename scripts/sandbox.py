"""A database and a RabbitMQ vhost of their own, for a test run or a benchmark.

The tests, the end-to-end `make up` test and the benchmarks each work in
their own, so none of them disturbs a running `make up` stack or another.
Local PostgreSQL (trust auth) and RabbitMQ (rabbitmqctl) only: this is
developer tooling, not something the stack itself runs.
"""
import subprocess

import psycopg2


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

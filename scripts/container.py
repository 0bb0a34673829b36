"""What the control-plane image runs around its processes (docker/entrypoint.sh, probes).

    python -m scripts.container check [--database-only]   before a role starts
    python -m scripts.container check --migrated          Kubernetes init container: wait for the release's migrations
    python -m scripts.container health                    HEALTHCHECK and Kubernetes probes
    python -m scripts.container proxy --wait-up 2         a gateway's rolling restart: until HAProxy sends to both

``check`` loads the configuration and connects once to PostgreSQL and RabbitMQ;
a missing setting or an unreachable dependency is one JSON log line and exit
status 1, so the orchestrator restarts the container instead of a process
that logs tracebacks in a loop.

``health`` asks about the process the container runs (PID 1): the gateway must
answer ``GET /healthz`` and reach the broker (a service with no replica makes
``/healthz`` a 503 naming it, but does not make the gateways unready); a service or the ingest consumer must hold an
established connection to the broker, which is what makes a replica take work.

``proxy`` reads what HAProxy (docker-compose.yml's ``proxy``) thinks of each gateway. Docker's
``healthy`` is the gateway's own view; HAProxy finds a restarted replica by DNS and checks it
itself, and until it does, stopping the other replica would leave it none to send to.
"""
import argparse
import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit


TIMEOUT_SECONDS = 5


def fail(message):
    print(json.dumps({"level": "ERROR", "logger": "steward.container", "message": message}), file=sys.stderr,
          flush=True)
    return 1


def _reach(what, host, port):
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS):
            return None
    except OSError as exc:
        return f"{what} at {host}:{port} is unreachable: {exc.strerror or exc}"


def wait_for_migrations(database_url, timeout):
    """Until every service's schema is at its head revision (the migrations Job ran), or ``timeout`` s."""
    import time

    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from shared.config import registered_services
    from shared.db import make_engine
    from shared.migrations import alembic_config, service_metadata

    heads = {s: ScriptDirectory.from_config(alembic_config(s, database_url)).get_current_head()
             for s in registered_services()}
    engine = make_engine(database_url, pool_size=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            behind = []
            with engine.connect() as connection:
                for service, head in heads.items():
                    schema = service_metadata(service).schema
                    exists = connection.execute(text("SELECT to_regclass(:t)"), {"t": f"{schema}.alembic_version"}).scalar()
                    current = exists and connection.execute(text(f'SELECT version_num FROM "{schema}".alembic_version')).scalar()
                    if current != head:
                        behind.append(service)
            if not behind:
                return None
            if time.monotonic() > deadline:
                return f"the migrations of {', '.join(behind)} have not run (the release's migrations Job)"
            time.sleep(2)
    finally:
        engine.dispose()


def check(database_only=False, migrated_within=None):
    from shared.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        return fail(f"cannot start: {exc}")
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    problem = _reach("PostgreSQL", url.host, url.port or 5432)
    if problem is None:
        try:
            psycopg2.connect(dbname=url.database, host=url.host, port=url.port or 5432, user=url.username,
                             password=url.password or None, connect_timeout=TIMEOUT_SECONDS).close()
        except psycopg2.Error as exc:
            problem = f"PostgreSQL refused the connection: {str(exc).strip().splitlines()[0]}"
    if problem is None and not database_only:
        amqp = urlsplit(settings.amqp_uri)
        problem = _reach("RabbitMQ", amqp.hostname, amqp.port or 5672)
    if problem is None and migrated_within is not None:
        problem = wait_for_migrations(settings.database_url, migrated_within)
    return fail(f"cannot start: {problem}") if problem else 0


def socket_inodes(pid):
    """The inodes of the sockets process ``pid`` holds (none when it is gone or not ours to look at)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


ESTABLISHED, LISTEN = "01", "0A"  # TCP states as /proc/net/tcp writes them


def tcp_sockets(state, local_port=None, remote_port=None):
    """The inodes of this network namespace's TCP sockets in ``state`` with the given ports."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
            if fields[3] == state and local_port in (None, local) and remote_port in (None, remote):
                inodes.add(fields[9])
    return inodes


def connected_to(pid, port):
    """Does process ``pid`` hold an ESTABLISHED TCP connection to ``port``?"""
    return bool(tcp_sockets(ESTABLISHED, remote_port=port) & socket_inodes(pid))


def health(pid=1):
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if "gunicorn" in command:
        bind = os.environ.get("STEWARD_BIND", "127.0.0.1:8080")
        port = bind.rsplit(":", 1)[1]
        import requests

        try:
            answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_SECONDS)
            body = answer.json()
        except (requests.RequestException, ValueError) as exc:
            return fail(f"/healthz: {exc}")
        # A gateway that serves and reaches the broker is ready: a service without replicas (a 503 naming it)
        # is that service's problem, and taking every gateway out for it would take the whole API down.
        if answer.status_code == 200 or (body.get("broker") or {}).get("reachable"):
            return 0
        return fail(f"/healthz answered {answer.status_code}: {'; '.join(body.get('problems') or [])}")
    from shared.config import load_settings  # here: the gateway's check needs none of it (imports cost ~0.5 s)

    amqp = urlsplit(load_settings().amqp_uri)
    if connected_to(pid, amqp.port or 5672):
        return 0
    return fail(f"no connection to RabbitMQ at {amqp.hostname}:{amqp.port or 5672}")


def proxy_gateways(url):
    """HAProxy's status of each gateway in backend ``gateways`` (its CSV statistics), by server name."""
    import csv
    import io

    import requests

    answer = requests.get(url, timeout=TIMEOUT_SECONDS)
    answer.raise_for_status()
    rows = csv.DictReader(io.StringIO(answer.text.lstrip("# ")))
    return {row["svname"]: row["status"] for row in rows
            if row["pxname"] == "gateways" and row["svname"] not in ("FRONTEND", "BACKEND")}


def wait_for_proxy(url, up, timeout):
    """Until HAProxy counts ``up`` gateways UP (not draining, not going down), or ``timeout`` s."""
    import time

    import requests

    deadline, seen = time.monotonic() + timeout, None
    while True:
        try:
            seen = proxy_gateways(url)
        except requests.RequestException as exc:
            seen = f"{url}: {exc}"
        else:
            if sum(status == "UP" for status in seen.values()) >= up:
                print(json.dumps({"gateways": seen}), flush=True)
                return 0
        if time.monotonic() > deadline:
            return fail(f"HAProxy has not counted {up} gateways up in {timeout:.0f} s: {seen}")
        time.sleep(0.5)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checking = commands.add_parser("check", help="configuration, database and broker reachable")
    checking.add_argument("--database-only", action="store_true")
    checking.add_argument("--migrated", action="store_true", help="also wait (up to 10 minutes) until the schema is at head")
    commands.add_parser("health", help="is the container's process healthy")
    proxying = commands.add_parser("proxy", help="the gateways as HAProxy sees them; --wait-up N waits for N up")
    proxying.add_argument("--url", default=os.environ.get("STEWARD_PROXY_STATS_URL", "http://proxy:8404/stats;csv"))
    proxying.add_argument("--wait-up", type=int, default=0, metavar="N")
    proxying.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.database_only, 600 if args.migrated else None)
    if args.command == "proxy":
        return wait_for_proxy(args.url, args.wait_up, args.timeout)
    return health()


if __name__ == "__main__":
    sys.exit(main())

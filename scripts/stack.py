"""`make up`, `make down`, `make logs`: the whole stack as local processes.

up:   checks PostgreSQL and RabbitMQ (starting them when installed but
      stopped), creates the database, applies migrations, starts every
      service and the gateway under gunicorn, waits until /healthz is ok,
      and prints the API URL and an admin token (also in .steward/admin-token).
down: stops what `up` started.
logs: follows every log.

Settings come from the environment (see config/steward.yaml); the state
directory is $STEWARD_STATE_DIR (default .steward).
"""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("STEWARD_STATE_DIR", ROOT / ".steward")).resolve()
RUN, LOGS = STATE / "run", STATE / "logs"
PY = sys.executable


class StackError(Exception):
    pass


def say(message):
    print(f"steward: {message}", flush=True)


def _port_open(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise StackError(f"{what} did not come up within {seconds} s")


def _record_started(name):
    (RUN / "infra").mkdir(parents=True, exist_ok=True)
    (RUN / "infra" / name).touch()


def ensure_postgres():
    host, port = os.environ.get("STEWARD_DB_HOST", "127.0.0.1"), os.environ.get("STEWARD_DB_PORT", "5432")
    if _port_open(host, port):
        return
    if host not in ("127.0.0.1", "localhost"):
        raise StackError(f"PostgreSQL at {host}:{port} is not reachable")
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        raise StackError("PostgreSQL is not installed: apt-get install postgresql (or set STEWARD_DB_HOST)")
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    say(f"starting PostgreSQL {version}")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True)
    _record_started(f"postgresql-{version}")
    _wait_for(lambda: _port_open(host, port), 60, "PostgreSQL")


def ensure_rabbitmq():
    host, port = os.environ.get("STEWARD_AMQP_HOST", "127.0.0.1"), os.environ.get("STEWARD_AMQP_PORT", "5672")
    if not _port_open(host, port):
        if host not in ("127.0.0.1", "localhost"):
            raise StackError(f"RabbitMQ at {host}:{port} is not reachable")
        if not shutil.which("rabbitmq-server"):
            raise StackError("RabbitMQ is not installed: apt-get install rabbitmq-server (or set STEWARD_AMQP_HOST)")
        say("starting RabbitMQ")
        subprocess.run(["rabbitmq-server", "-detached"], check=True)
        _record_started("rabbitmq")
        _wait_for(lambda: _port_open(host, port), 90, "RabbitMQ")
    if host in ("127.0.0.1", "localhost") and shutil.which("rabbitmq-plugins"):
        # The provisioner makes a RabbitMQ user per server through the management API.
        subprocess.run(["rabbitmq-plugins", "enable", "--quiet", "rabbitmq_management"], capture_output=True)
    vhost = os.environ.get("STEWARD_AMQP_VHOST", "/")
    if vhost not in ("/", "%2F") and shutil.which("rabbitmqctl"):
        user = os.environ.get("STEWARD_AMQP_USER", "guest")
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], capture_output=True)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"], capture_output=True, check=True)


def ensure_database(settings):
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    params = dict(host=url.host, port=url.port or 5432, user=url.username, password=url.password or None)
    connection = psycopg2.connect(dbname="postgres", **params)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
        if cursor.fetchone() is None:
            say(f"creating database {url.database}")
            cursor.execute(f'CREATE DATABASE "{url.database}"')
    connection.close()


def ensure_secret_key():
    if os.environ.get("STEWARD_SECRET_KEY"):
        return
    path = STATE / "secret-key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    os.environ["STEWARD_SECRET_KEY"] = path.read_text().strip()


def _running(name):
    pidfile = RUN / f"{name}.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
        return pid
    except (ValueError, ProcessLookupError):
        pidfile.unlink(missing_ok=True)
        return None


def _spawn(name, argv):
    if _running(name):
        say(f"{name} already running")
        return
    log = open(LOGS / f"{name}.log", "ab")
    process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (RUN / f"{name}.pid").write_text(str(process.pid))
    say(f"started {name} (pid {process.pid})")


def bind_address():
    return os.environ.setdefault("STEWARD_BIND", "127.0.0.1:8080")


def _healthy(url):
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=3) as response:
            return response.status == 200
    except Exception:
        return False


def _token_works(url, token):
    request = urllib.request.Request(f"{url}/api/v2/tokens", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except Exception:
        return False


def up():
    from services.inventory.bootstrap import main as bootstrap
    from shared.config import SERVICES, load_settings
    from shared.migrations import upgrade

    for directory in (STATE, RUN, LOGS):
        directory.mkdir(parents=True, exist_ok=True)
    ensure_postgres()
    ensure_rabbitmq()
    ensure_secret_key()
    settings = load_settings()
    ensure_database(settings)
    upgrade(settings.database_url)
    say("migrations applied")

    for service in SERVICES:
        _spawn(service, [PY, "-m", f"services.{service}"])
    # Agent traffic is consumed in batches by a process of its own, not by nameko workers.
    _spawn("monitoring_ingest-consumer", [PY, "-m", "services.monitoring_ingest.consumer"])
    bind = bind_address()
    _spawn("gateway", [PY, "-m", "gunicorn", "-c", str(ROOT / "gateway" / "gunicorn.conf.py"), "gateway.app:get_app()"])
    url = f"http://{bind}"
    try:
        _wait_for(lambda: _healthy(url), 60, "the gateway and services")
    except StackError:
        raise StackError(f"the stack did not become healthy; see {LOGS} (make logs)") from None

    token_file = STATE / "admin-token"
    if not (token_file.exists() and _token_works(url, token_file.read_text().strip())):
        bootstrap(["--admin", "admin", "--token-file", str(token_file)])
    (STATE / "api-url").write_text(url + "\n")
    say("the stack is up")
    print(f"API URL:     {url}/api/v2   (docs: {url}/api/v2/docs)")
    print(f"Admin token: {token_file.read_text().strip()}   (also in {token_file}, mode 0600)")


def _stop_pid(name, pid, grace=20):
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        say(f"{name} did not stop in {grace} s; killing it")
        os.killpg(pid, signal.SIGKILL)
    say(f"stopped {name}")


def down():
    if not RUN.exists():
        say("nothing to stop")
        return
    for pidfile in sorted(RUN.glob("*.pid"), key=lambda p: p.stem != "gateway"):
        pid = _running(pidfile.stem)
        if pid:
            _stop_pid(pidfile.stem, pid)
        pidfile.unlink(missing_ok=True)
    infra = RUN / "infra"
    for marker in sorted(infra.glob("*")) if infra.exists() else []:
        if marker.name == "rabbitmq":
            subprocess.run(["rabbitmqctl", "-q", "stop"], check=False)
        elif marker.name.startswith("postgresql-"):
            version = marker.name.split("-", 1)[1]
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"], check=False)
        say(f"stopped {marker.name} (started by make up)")
        marker.unlink()


def logs():
    files = sorted(str(p) for p in LOGS.glob("*.log")) if LOGS.exists() else []
    if not files:
        raise StackError("no logs yet; run make up")
    os.execvp("tail", ["tail", "-n", "50", "-F", *files])


def main(argv):
    commands = {"up": up, "down": down, "logs": logs}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m scripts.stack {{{','.join(commands)}}}", file=sys.stderr)
        return 2
    try:
        commands[argv[0]]()
    except StackError as exc:
        print(f"steward: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

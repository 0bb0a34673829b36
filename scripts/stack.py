"""`make up`, `make down`, `make logs`: the whole stack as local processes.

up:   checks PostgreSQL and RabbitMQ (starting them when installed but
      stopped) and that the gateway's port is free, creates the database,
      applies migrations, starts every service and the gateway under
      gunicorn, waits until that gunicorn listens on the port and /healthz
      is ok, and prints the API URL and an admin token (also in
      .steward/admin-token).
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
from pathlib import Path

import requests

from scripts.container import LISTEN, socket_inodes, tcp_sockets

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


def _stat(pid):
    """(state, session id) of a process from /proc, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": the name may hold spaces
    return fields[0], int(fields[3])


def _being_killed(pid):
    """SIGKILL was sent and the kernel is still tearing the process down."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    pending = 0
    for line in status.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            pending |= int(line.split()[1], 16)
    return bool(pending & (1 << (signal.SIGKILL - 1)))


def _alive(pid, wait=10.0):
    """Whether a process that make up started still runs. One being killed is waited for (a respawn right
    after kill -9 must not find it "already running"); a zombie is gone (and reaped if it is our child);
    a pid the kernel gave to another process (not the session leader our start made) is not ours."""
    deadline = time.monotonic() + wait
    while _being_killed(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    found = _stat(pid)
    if found is None or found[0] in "ZXx" or found[1] != pid:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


def _running(name):
    pidfile = RUN / f"{name}.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text())
    except ValueError:
        pid = None
    if pid and _alive(pid):
        return pid
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
    return process.pid


def bind_address():
    return os.environ.setdefault("STEWARD_BIND", "127.0.0.1:8080")


def _host_port(bind):
    host, _, port = bind.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def listens_on(pid, port):
    """Whether process ``pid`` itself holds a socket listening on ``port``."""
    return bool(tcp_sockets(LISTEN, local_port=port) & socket_inodes(pid))


def _listeners(port):
    """'pid N: command' of the processes listening on ``port`` (those this user may look at)."""
    inodes, found = tcp_sockets(LISTEN, local_port=port), []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and inodes & socket_inodes(proc.name):
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(f"pid {proc.name}: {command[:80]}")
    return found


def ensure_port_free(bind):
    """Refuse to start when something else has the gateway's port (our own running gateway may)."""
    host, port = _host_port(bind)
    gateway = _running("gateway")
    if gateway and listens_on(gateway, port):
        return
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
    try:
        probe.bind((host, port))
    except OSError as exc:
        owners = _listeners(port)
        raise StackError(f"{bind} is in use ({exc.strerror}{'; ' + ', '.join(owners) if owners else ''}): "
                         "stop that process or set STEWARD_BIND to a free address") from None
    finally:
        probe.close()


def _answers_200(url, **headers):
    try:
        return requests.get(url, headers=headers, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _healthy(url):
    return _answers_200(f"{url}/healthz")


def _token_works(url, token):
    return _answers_200(f"{url}/api/v2/tokens", Authorization=f"Bearer {token}")


def up():
    from services.inventory.bootstrap import main as bootstrap
    from shared.config import load_settings, registered_services
    from shared.migrations import upgrade

    for directory in (STATE, RUN, LOGS):
        directory.mkdir(parents=True, exist_ok=True)
    bind = bind_address()
    ensure_port_free(bind)
    ensure_postgres()
    ensure_rabbitmq()
    ensure_secret_key()
    settings = load_settings()
    ensure_database(settings)
    upgrade(settings.database_url)
    say("migrations applied")

    for service in registered_services():
        _spawn(service, [PY, "-m", f"services.{service}"])
    # Agent traffic is consumed in batches by a process of its own, not by nameko workers.
    _spawn("monitoring_ingest-consumer", [PY, "-m", "services.monitoring_ingest.consumer"])
    _spawn("gateway", [PY, "-m", "gunicorn", "-c", str(ROOT / "gateway" / "gunicorn.conf.py"), "gateway.app:get_app()"])
    url = f"http://{bind}"
    port = _host_port(bind)[1]

    def ours_and_healthy():
        # Whatever answers on the port must be the gunicorn we started, not another process.
        gateway = _running("gateway")
        if gateway is None:
            raise StackError(f"the gateway exited; see {LOGS / 'gateway.log'}")
        return listens_on(gateway, port) and _healthy(url)

    try:
        _wait_for(ours_and_healthy, 60, "the gateway and services")
    except StackError as exc:
        raise StackError(f"the stack did not become healthy ({exc}); see {LOGS} (make logs)") from None

    token_file, password_file = STATE / "admin-token", STATE / "admin-password"
    if not (token_file.exists() and password_file.exists() and _token_works(url, token_file.read_text().strip())):
        bootstrap(["--admin", "admin", "--token-file", str(token_file), "--password-file", str(password_file)])
    (STATE / "api-url").write_text(url + "\n")
    say("the stack is up")
    print(f"API URL:     {url}/api/v2   (docs: {url}/api/v2/docs)")
    print(f"Admin token: {token_file.read_text().strip()}   (also in {token_file}, mode 0600)")
    print(f"Console:     {url}/   (sign in as admin with the password in {password_file}, mode 0600)")


def _stop_pid(name, pid, grace=20):
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid, wait=0):
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

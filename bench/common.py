"""What every benchmark needs: a database and vhost of its own, services and
the gateway as real processes, and percentiles."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from scripts.sandbox import drop_database, ensure_vhost


ROOT = Path(__file__).resolve().parent.parent


def percentile(samples, fraction):
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_environment(name):
    """Environment for a benchmark: its own database and vhost, recreated (``STEWARD_BENCH_SUFFIX`` is
    appended to the name, so that runs on one machine keep apart)."""
    name += os.environ.get("STEWARD_BENCH_SUFFIX", "")
    drop_database(name, recreate=True)
    ensure_vhost(name, recreate=True)  # an earlier run's queued messages would be counted in this one
    env = dict(os.environ, STEWARD_DB_NAME=name, STEWARD_AMQP_VHOST=name, STEWARD_SECRET_KEY="bench-secret", STEWARD_LOG_LEVEL="WARNING")
    os.environ.update(env)
    return env


class Processes:
    """Child processes that are stopped however the benchmark ends."""

    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children = []

    def start(self, name, argv):
        log = open(self.log_dir / f"{name}.log", "wb")
        process = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(process)
        return process

    def service(self, name):
        return self.start(name, [sys.executable, "-m", f"services.{name}"])

    def gateway(self, port, workers=2, threads=4):
        env_extra = {"STEWARD_BIND": f"127.0.0.1:{port}", "STEWARD_GATEWAY_WORKERS": str(workers),
                     "STEWARD_GATEWAY_THREADS": str(threads)}
        self.env.update(env_extra)
        return self.start("gateway", [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gateway" / "gunicorn.conf.py"),
                                      "gateway.app:get_app()"])

    def stop(self):
        for process in self.children:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in self.children:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def wait_healthy(url, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become healthy")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def pids_named(command_name):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == command_name:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


class CpuMeter:
    """CPU seconds spent by named groups of processes between start() and stop()."""

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning pids

    def _sample(self):
        return {name: {pid: process_cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self):
        self._before = self._sample()
        self._started = time.perf_counter()

    def stop(self):
        after = self._sample()
        elapsed = time.perf_counter() - self._started
        used = {}
        for name, samples in after.items():
            before = self._before.get(name, {})
            used[name] = sum(cpu - before.get(pid, 0.0) for pid, cpu in samples.items())
        return used, elapsed


def format_cpu(used, elapsed, requests):
    parts = [f"{name} {100 * seconds / elapsed:.0f}%" for name, seconds in used.items()]
    total_ms = 1000 * sum(used.values()) / max(requests, 1)
    return f"CPU (of one core): {', '.join(parts)}; {total_ms:.2f} ms CPU per request in these"

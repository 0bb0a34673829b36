#!/usr/bin/env python3
"""Diagnostics on a managed server (standard library; pika from the bundle's vendor/ for the broker check).

    python3 <prefix>/opt/steward/pv_diagnose.py

Checks the component runtime (Docker, or the process runtime's knotd and
kea-dhcp4), the monitoring component (the agent), that the broker accepts the
agent's RabbitMQ credentials, and disk space. Prints "== check NAME" as each
check begins and one JSON object when it ends ({"name", "status":
"passed"|"failed", "message"}) on stdout, and exits 0 when every check passed,
1 otherwise.
"""
import json
import os
import shutil
import subprocess
import sys

DISK_MIN_FREE_PERCENT = 5.0
PROCESSES = {"dns": ("knotd", "run/steward/knot/knot.pid"), "dhcp": ("kea-dhcp4", "run/steward/kea/kea-dhcp4.kea-dhcp4.pid")}


def _prefix():
    return os.environ.get("STEWARD_PREFIX", "/").rstrip("/")


def _path(relative):
    return os.path.join(_prefix() + "/", relative)


def _read(relative, default=None):
    try:
        with open(_path(relative)) as handle:
            return handle.read()
    except OSError:
        return default


def _alive(pidfile):
    pid = (_read(pidfile) or "").strip()
    if not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, owned by another user
    return int(pid)


def check_runtime():
    runtime = (_read("etc/steward/runtime", "docker") or "docker").strip()
    if runtime == "docker":
        if shutil.which("docker") is None:
            return "failed", "the docker runtime is configured but docker is not installed"
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=20)
        if done.returncode:
            return "failed", "the Docker engine does not answer: %s" % done.stdout.strip()[-300:]
        return "passed", "Docker engine %s is running" % done.stdout.strip()
    expected = json.loads(_read("provision/state/components.json", "{}") or "{}")
    problems, running = [], []
    for component, (binary, pidfile) in PROCESSES.items():
        if shutil.which(binary) is None:
            problems.append("%s is not installed" % binary)
        elif component in expected:
            pid = _alive(pidfile)
            if pid:
                running.append("%s %s (pid %d)" % (component, expected[component], pid))
            else:
                problems.append("%s should run (%s) but its process is gone" % (component, expected[component]))
    if problems:
        return "failed", "process runtime: " + "; ".join(problems)
    return "passed", "process runtime: " + (", ".join(running) or "knotd and kea-dhcp4 installed, no component started")


def check_monitor():
    pid = _alive("run/steward/agent.pid")
    if pid:
        return "passed", "the agent runs (pid %d)" % pid
    if _prefix() == "" and shutil.which("systemctl"):
        done = subprocess.run(["systemctl", "is-active", "pv_heartbeat.service"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True)
        if done.stdout.strip() == "active":
            return "passed", "pv_heartbeat.service is active"
    return "failed", "the agent (monitoring component) is not running; start it with start_pv_monitor.sh"


def check_rabbitmq():
    config = json.loads(_read("etc/steward/agent.json", "{}") or "{}")
    broker = config.get("rabbitmq") or {}
    if not broker.get("host"):
        return "failed", "the agent configuration names no RabbitMQ host"
    sys.path.insert(0, _path("opt/steward/vendor"))
    try:
        import pika
    except ImportError:
        return "failed", "pika is missing from %s" % _path("opt/steward/vendor")
    where = "%s:%s vhost %s as %s" % (broker["host"], broker.get("port", 5672), broker.get("vhost", "/"),
                                      broker.get("user"))
    parameters = pika.ConnectionParameters(
        host=broker["host"], port=int(broker.get("port", 5672)), virtual_host=broker.get("vhost", "/"),
        credentials=pika.PlainCredentials(broker.get("user", "guest"), broker.get("password", "")),
        socket_timeout=5, blocked_connection_timeout=5, connection_attempts=1, stack_timeout=8,
    )
    try:
        connection = pika.BlockingConnection(parameters)
    except pika.exceptions.ProbableAuthenticationError:
        return "failed", "RabbitMQ at %s refused the credentials" % where
    except Exception as exc:  # pika raises many kinds; each means "cannot reach the broker"
        return "failed", "cannot reach RabbitMQ at %s: %s" % (where, exc.__class__.__name__ + (": %s" % exc if str(exc) else ""))
    connection.close()
    return "passed", "RabbitMQ at %s accepts the agent's credentials" % where


def check_disk():
    usage = shutil.disk_usage(_prefix() or "/")
    free = 100.0 * usage.free / usage.total
    text = "%.1f%% free (%d MiB of %d MiB) on the install prefix" % (free, usage.free >> 20, usage.total >> 20)
    return ("passed" if free >= DISK_MIN_FREE_PERCENT else "failed"), text


CHECKS = (("runtime", check_runtime), ("monitor", check_monitor), ("rabbitmq", check_rabbitmq), ("disk", check_disk))


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    ok = True
    for name, check in CHECKS:
        print("== check %s" % name, flush=True)  # the updater's step for it starts now
        try:
            status, message = check()
        except Exception as exc:  # one broken check must not hide the others
            status, message = "failed", "the check itself failed: %r" % exc
        ok = ok and status == "passed"
        print(json.dumps({"name": name, "status": status, "message": message}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

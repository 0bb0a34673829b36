"""The docker-compose stack as `make compose-test` runs it: this machine's engine, the local
base images (no registry here), docker-compose.yml with docker/compose.local.yml, and a
project, ports and secrets of the test run's own."""
import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose.yml", "docker/compose.local.yml")
LOCAL_PYTHON = "steward-local/python:3.11-bookworm"
BENCHMARK_RANGE = ("198.18.", "198.19.")


def run(argv, check=True, timeout=600, **kwargs):
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def prepare_images():
    """Engine, local bases and wheelhouse; each step is skipped when its result is there. Returns seconds per step."""
    timings = {}
    for name, argv in (
        ("engine", ["bash", "docker/engine.sh"]),
        ("base image", ["bash", "docker/base-image.sh"]),
        ("wheelhouse", ["make", "-s", "wheelhouse"]),
        ("python image", ["docker", "build", "-q", "--network", "host", "-t", LOCAL_PYTHON, "docker/python"]),
    ):
        started = time.monotonic()
        run(argv)
        timings[name] = time.monotonic() - started
    return timings


class Stack:
    def __init__(self, project):
        self.project = re.sub(r"[^a-z0-9]", "", project.lower())
        self.http_port, self.amqp_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.amqp_password = secrets.token_hex(12)
        self.db_password = secrets.token_hex(12)
        self.env = dict(
            os.environ,
            STEWARD_SECRET_KEY=secrets.token_urlsafe(32),
            STEWARD_DB_PASSWORD=self.db_password,
            STEWARD_AMQP_PASSWORD=self.amqp_password,
            STEWARD_HTTP_PORT=str(self.http_port),
            STEWARD_AMQP_PUBLISHED_PORT=str(self.amqp_port),
            STEWARD_PUBLIC_URL=self.url,
            STEWARD_IMAGE=f"steward-test/{self.project}:latest",
            STEWARD_LOG_LEVEL="WARNING",
        )

    @property
    def amqp_uri(self):
        return f"amqp://steward:{self.amqp_password}@127.0.0.1:{self.amqp_port}/%2F"

    def compose(self, *args, check=True, timeout=600):
        files = [arg for name in COMPOSE_FILES for arg in ("-f", name)]
        return run(["docker-compose", "-p", self.project, *files, *args], check=check, timeout=timeout, env=self.env)

    def containers(self, service=None):
        """{name: id} of the project's containers (of one service), running or not."""
        labels = [f"label=com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"label=com.docker.compose.service={service}")
        filters = [arg for label in labels for arg in ("--filter", label)]
        lines = run(["docker", "ps", "-a", *filters, "--format", "{{.Names}} {{.ID}}"]).stdout.split()
        return dict(zip(lines[::2], lines[1::2]))

    def inspect(self, container):
        return json.loads(run(["docker", "inspect", container]).stdout)[0]

    def health(self, container):
        state = self.inspect(container)["State"]
        return state.get("Health", {}).get("Status") or state["Status"]

    def sql(self, statement):
        """One value from the stack's own PostgreSQL, through psql in its container."""
        (name,) = self.containers("postgres")
        done = run(["docker", "exec", name, "psql", "-U", "steward", "-d", "steward", "-Atc", statement])
        return done.stdout.strip()

    def networks(self):
        """{network name: subnet} of every network the project made."""
        names = run(["docker", "network", "ls", "--filter", f"label=com.docker.compose.project={self.project}",
                     "--format", "{{.Name}}"]).stdout.split()
        return {name: json.loads(run(["docker", "network", "inspect", name]).stdout)[0]["IPAM"]["Config"][0]["Subnet"]
                for name in names}

    def addresses(self):
        """Every container's address on the project's networks."""
        found = {}
        for name in self.containers():
            for network in self.inspect(name)["NetworkSettings"]["Networks"].values():
                if network.get("IPAddress"):
                    found[name] = network["IPAddress"]
        return found

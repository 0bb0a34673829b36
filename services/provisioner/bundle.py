"""The setup bundle: setup-<id>.tar with everything one server needs and nothing else.

It holds the agent package and a vendored pika, the agent's configuration (its
server id, its own agent token, RabbitMQ credentials that may only write to
steward.agent), the install scripts, the unit and the sudoers snippet. No other
server's secrets and none of the control plane's.

This module is the control plane's one reader of the agent's files (``agent/``):
it packs them, asks ``pv_install.py --steps-json`` for the install steps and
reads the agent's version from its source. It never imports them: they run on
managed servers (standard library and pika only) and ship alone.
"""
import ast
import functools
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from urllib.parse import urlsplit

AGENT_DIR = Path(__file__).resolve().parents[2] / "agent"
PROVISION_DIR = AGENT_DIR / "provision"

# Files of agent/provision/ that ship at the bundle's top level.
PROVISION_FILES = ("pv_install.py", "pv_probes.py", "pv_update.py", "pv_diagnose.py", "pv_common.sh", "pv_heartbeat.sh",
                   "install_python3.sh", "install_docker.sh", "network_config.sh", "prepare_server.sh", "steward_root.sh",
                   "README.md")
PROVISION_DIRS = ("templates", "sudoers")
# The agent's own unit (issue 3), at the bundle's top level beside the sudoers snippet.
HEARTBEAT_UNIT = "systemd/pv_heartbeat.service"
_SKIP = {"__pycache__", "provision", "tests"}


@functools.cache
def pv_install_steps():
    """[(name, needs root)] of pv_install.py's steps, in order, as the script itself lists them."""
    listed = subprocess.run([sys.executable, str(PROVISION_DIR / "pv_install.py"), "--steps-json"],
                            capture_output=True, text=True, check=True, timeout=60)
    return tuple((step["name"], step["root"]) for step in json.loads(listed.stdout))


def _constant(path, name):
    module = ast.parse(path.read_text())
    for node in module.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return ast.literal_eval(node.value)
    raise LookupError(f"{path} does not set {name}")


def agent_version():
    """AGENT_VERSION of agent/__init__.py, read from its source."""
    return _constant(AGENT_DIR / "__init__.py", "AGENT_VERSION")


def backup_server_version():
    """VERSION of the backup-server daemon (agent/backup_server/__init__.py), read from its source."""
    return _constant(AGENT_DIR / "backup_server" / "__init__.py", "VERSION")


def default_versions():
    """The versions a first install runs (the updater moves them on later).

    knotd 3.2.6 and kea-dhcp4 2.2.0 are what Debian 12 ships, so the process runtime
    and the docker images run the same versions.
    """
    return {"dns": "3.2.6", "dhcp": "2.2.0", "monitor": agent_version(), "backup": backup_server_version()}


def monitoring_url(api_ip, public_url):
    """The gateway as the agent reaches it: the monitoring API IP on the public URL's scheme and port."""
    public = urlsplit(public_url)
    if not api_ip:
        return public_url.rstrip("/")
    host = f"[{api_ip}]" if ":" in api_ip else api_ip
    port = f":{public.port}" if public.port else ""
    return f"{public.scheme}://{host}{port}"


def agent_config(server_id, agent_token, monitoring, api_url, rabbitmq):
    """The agent's configuration file (keys in agent/config.py); paths are set by pv_install.py."""
    return {
        "server_id": server_id,
        "agent_token": agent_token,
        "monitoring_url": api_url,
        "verify_ca": bool(monitoring.get("verify_ca")),  # false: do not verify (was None, which verified)
        "communication_type": monitoring.get("communication_type", "push"),
        "system_interval_seconds": monitoring.get("system_interval_seconds", 60),
        "dns_interval_seconds": monitoring.get("dns_interval_seconds", 60),
        "rabbitmq": rabbitmq,
    }


class BundleBuilder:
    def __init__(self, agent_dir=AGENT_DIR, provision_dir=PROVISION_DIR, pika_dir=None, clock=time.time):
        import pika

        self.agent_dir = Path(agent_dir)
        self.provision_dir = Path(provision_dir)
        self.pika_dir = Path(pika_dir or Path(pika.__file__).parent)
        self.clock = clock

    def build(self, server, config, versions, sudo_user, backup_config=None):
        """(filename, tar bytes, sha256) for ``server`` = {id, runtime, components}; ``backup_config``
        (the backup-server daemon's, for a server with the backup component) holds no secret."""
        top = f"setup-{server['id']}"
        manifest = {
            "server_id": server["id"],
            "runtime": server["runtime"],
            "components": {c: versions[c] for c in server["components"] if c in versions},
            "sudo_user": sudo_user,
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            self._add_tree(tar, self.agent_dir, f"{top}/agent")
            self._add_tree(tar, self.pika_dir, f"{top}/vendor/pika")
            for name in PROVISION_FILES + tuple(p.name for p in sorted(self.provision_dir.glob("*_pv_*.sh"))):
                path = self.provision_dir / name
                if path.exists():
                    tar.add(path, f"{top}/{name}", filter=self._normalise)
            for name in PROVISION_DIRS:
                self._add_tree(tar, self.provision_dir / name, f"{top}/{name}")
            tar.add(self.agent_dir / HEARTBEAT_UNIT, f"{top}/{HEARTBEAT_UNIT}", filter=self._normalise)
            self._add_bytes(tar, f"{top}/manifest.json", json.dumps(manifest, indent=2).encode(), 0o644)
            self._add_bytes(tar, f"{top}/config/agent.json", json.dumps(config, indent=2).encode(), 0o600)
            if backup_config is not None:
                self._add_bytes(tar, f"{top}/config/backup-server.json", json.dumps(backup_config, indent=2).encode(), 0o600)
        data = buffer.getvalue()
        return f"{top}.tar", data, hashlib.sha256(data).hexdigest()

    def _normalise(self, info):
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def _add_tree(self, tar, root, arcname):
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if _SKIP & set(relative.parts) or path.suffix == ".pyc" or path.is_dir():
                continue
            tar.add(path, f"{arcname}/{relative}", recursive=False, filter=self._normalise)

    def _add_bytes(self, tar, name, data, mode):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, int(self.clock())
        tar.addfile(self._normalise(info), io.BytesIO(data))

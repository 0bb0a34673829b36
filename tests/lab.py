"""Lab hosts: managed servers made on this machine, for tests, `make demo` and benchmarks.

Each lab host is a network namespace with a veth pair to the host (a /30 in
198.18.0.0/15), its own sshd (generated host key; root and a non-root user
``steward`` with sudo, all of it until ``limit_sudo``; password and key logins) and its own install prefix.
Users, passwords and sudo rights exist only inside the lab sshd's mount
namespace: its /etc/passwd, /etc/shadow, /etc/group and /etc/sudoers are bind
mounts of files in the lab's directory, so the machine's own accounts are
untouched. Sessions get STEWARD_PREFIX, so installs land in the lab's tree.

    with lab_hosts(2) as hosts:
        hosts[0].address, hosts[0].root_password, hosts[0].private_key, ...

A lab host may run a Docker engine of its own (``lab_host(docker=[images])``): dockerd
inside the namespace with its data, exec root, pid file and socket in the lab's directory,
its bridge in 198.18.254.0/23, and the given images loaded from this machine's engine.
Sessions get DOCKER_HOST pointing at that socket, so a lab host never reaches another engine.

Everything made is removed on exit, also when the body raised.
"""
import contextlib
import fcntl
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LAB_ROOT = Path(os.environ.get("STEWARD_LAB_ROOT", "/tmp/steward-lab"))
LAB_NETWORK = ipaddress.ip_network("198.18.0.0/15")
_LOCK = LAB_ROOT / ".lock"
# flock orders processes; inside one process (green threads under eventlet, where a blocking
# flock would stall the holder too) this lock orders the threads first.
_PROCESS_LOCK = threading.Lock()
USER = "steward"
USER_UID = 64990
SUDO_DEFAULTS = ["Defaults env_reset", 'Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"',
                 "root ALL=(ALL:ALL) ALL"]


def _run(*argv, check=True):
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _stop_group(process, grace):
    """SIGTERM to a process group we started, SIGKILL after ``grace`` seconds."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _password_hash(password):
    done = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _used_lab_networks():
    out = _run("ip", "-o", "-4", "addr", "show").stdout
    used = set()
    for line in out.splitlines():
        address = ipaddress.ip_interface(line.split()[3])
        if address.ip in LAB_NETWORK:
            used.add(ipaddress.ip_network(f"{address.ip}/30", strict=False))
    return used


class LabHost:
    def __init__(self, tag):
        self.tag = tag
        self.namespace = f"stwlab-{tag}"
        self.veth_host, self.veth_ns = f"stwh{tag}", f"stwn{tag}"
        self.root = LAB_ROOT / self.namespace
        self.prefix = self.root / "prefix"
        self.port = 22
        self.root_password = secrets.token_urlsafe(12)
        self.user = USER
        self.user_password = secrets.token_urlsafe(12)
        self.sshd = None
        self.network = None
        self.dockerd = None

    # -- what a test needs ----------------------------------------------------
    @property
    def address(self):
        return str(self.network[2])

    @property
    def host_address(self):
        """This machine's end of the veth pair (where the lab host reaches the control plane)."""
        return str(self.network[1])

    @property
    def private_key(self):
        return (self.root / "client_key").read_text()

    @property
    def docker_socket(self):
        return self.root / "docker" / "docker.sock"

    def docker(self, *argv, check=True):
        """The docker CLI against this lab host's own engine."""
        return _run("docker", "-H", f"unix://{self.docker_socket}", *argv, check=check)

    def start_docker(self, images=()):
        """dockerd inside the namespace, state under the lab's directory; ``images`` copied from this machine's engine."""
        state = self.root / "docker"
        state.mkdir(parents=True, exist_ok=True)
        # nsenter, not `ip netns exec`: that remounts /sys for the namespace, hiding the cgroups dockerd needs.
        self.dockerd = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.namespace}", "dockerd", "--data-root", str(state / "data"),
             "--exec-root", str(state / "exec"), "--pidfile", str(state / "dockerd.pid"),
             "--host", f"unix://{self.docker_socket}", "--bip", "198.18.254.1/24",
             "--default-address-pool", "base=198.18.255.0/24,size=24"],
            stdout=open(state / "dockerd.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while self.docker("info", check=False).returncode:
            if self.dockerd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lab dockerd did not start: {(state / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        if images:
            saved = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
            subprocess.run(["docker", "-H", f"unix://{self.docker_socket}", "load", "-q"], stdin=saved.stdout,
                           capture_output=True, check=True)
            if saved.wait():
                raise RuntimeError(f"docker save {' '.join(images)} failed")

    def stop_docker(self):
        if self.dockerd is None or self.dockerd.poll() is not None:
            return
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)
        _stop_group(self.dockerd, 30)
        # What a killed engine left mounted under the lab's directory (overlays, its exec root).
        mounts = _run("findmnt", "-rn", "-o", "TARGET", check=False).stdout.split()
        for target in sorted((m for m in mounts if m.startswith(f"{self.root}/")), reverse=True):
            _run("umount", "-l", target, check=False)

    def exec(self, *argv, check=True):
        """Run a command inside the lab host's network namespace."""
        return _run("ip", "netns", "exec", self.namespace, *argv, check=check)

    # -- making and removing ----------------------------------------------------
    def create(self):
        LAB_ROOT.mkdir(parents=True, exist_ok=True)
        with _PROCESS_LOCK, open(_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _used_lab_networks()
            self.network = next(n for n in LAB_NETWORK.subnets(new_prefix=30) if n not in used)
            _run("ip", "netns", "add", self.namespace)
            _run("ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns)
            _run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.veth_host)
        _run("ip", "link", "set", self.veth_ns, "netns", self.namespace)
        _run("ip", "link", "set", self.veth_host, "up")
        self.exec("ip", "link", "set", "lo", "up")
        self.exec("ip", "addr", "add", f"{self.address}/30", "dev", self.veth_ns)
        self.exec("ip", "link", "set", self.veth_ns, "up")
        self._write_accounts()
        self._write_sshd()
        self.start_sshd()
        return self

    def _write_accounts(self):
        etc = self.root / "etc"
        for directory in (etc, self.prefix, self.root / "home" / "root", self.root / "home" / USER):
            directory.mkdir(parents=True, exist_ok=True)
        home_root, home_user = self.root / "home" / "root", self.root / "home" / USER
        passwd = [line if not line.startswith("root:") else f"root:x:0:0:root:{home_root}:/bin/bash"
                  for line in Path("/etc/passwd").read_text().splitlines()]
        passwd.append(f"{USER}:x:{USER_UID}:{USER_UID}:lab user:{home_user}:/bin/bash")
        shadow = [line for line in Path("/etc/shadow").read_text().splitlines() if not line.startswith("root:")]
        shadow += [f"root:{_password_hash(self.root_password)}:19000:0:99999:7:::",
                   f"{USER}:{_password_hash(self.user_password)}:19000:0:99999:7:::"]
        group = Path("/etc/group").read_text().splitlines() + [f"{USER}:x:{USER_UID}:"]
        sudoers = SUDO_DEFAULTS + [f"{USER} ALL=(ALL:ALL) NOPASSWD: ALL"]
        for name, lines, mode in (("passwd", passwd, 0o644), ("shadow", shadow, 0o640), ("group", group, 0o644),
                                  ("sudoers", sudoers, 0o440)):
            path = etc / name
            path.write_text("\n".join(lines) + "\n")
            os.chmod(path, mode)
        os.chown(home_user, USER_UID, USER_UID)

    def limit_sudo(self, rules_file):
        """The user's sudo rights become exactly ``rules_file`` (included as written; root keeps its own rule).
        The sshd sees it at once: its /etc/sudoers is this file, bind-mounted, rewritten in place."""
        (self.root / "etc" / "sudoers").write_text("\n".join(SUDO_DEFAULTS + [f"@include {rules_file}"]) + "\n")

    def _write_sshd(self):
        ssh = self.root / "ssh"
        (ssh / "authorized_keys").mkdir(parents=True, exist_ok=True)
        self._new_host_key()
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"steward-lab-{self.tag}", "-f", str(self.root / "client_key"))
        public = (self.root / "client_key.pub").read_text()
        for user in ("root", USER):
            (ssh / "authorized_keys" / user).write_text(public)
        (ssh / "sshd_config").write_text("\n".join([
            f"ListenAddress {self.address}:{self.port}",
            f"HostKey {ssh / 'host_key'}",
            f"PidFile {ssh / 'sshd.pid'}",
            f"AuthorizedKeysFile {ssh / 'authorized_keys'}/%u",
            "PermitRootLogin yes",
            "PasswordAuthentication yes",
            "PubkeyAuthentication yes",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "MaxStartups 100:30:200",
            f"SetEnv STEWARD_PREFIX={self.prefix} DOCKER_HOST=unix://{self.docker_socket}",
            "Subsystem sftp internal-sftp",
            "",
        ]))

    def _new_host_key(self):
        key = self.root / "ssh" / "host_key"
        for path in (key, key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))

    def start_sshd(self):
        etc = self.root / "etc"
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        mounts = " && ".join(f"mount --bind {etc / name} /etc/{name}" for name in ("passwd", "shadow", "group", "sudoers"))
        self.sshd = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, "unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"{mounts} && exec /usr/sbin/sshd -D -e -f {self.root / 'ssh' / 'sshd_config'}"],
            stdout=open(self.root / "sshd.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.sshd.poll() is not None:
                raise RuntimeError(f"lab sshd exited: {(self.root / 'sshd.log').read_text()[-2000:]}")
            if self.exec("sh", "-c", f"ss -ltn | grep -q '{self.address}:{self.port} '", check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("lab sshd did not listen within 10 s")

    def stop_sshd(self):
        if self.sshd is not None and self.sshd.poll() is None:
            _stop_group(self.sshd, 5)
        self.sshd = None

    def rotate_host_key(self):
        """As if the server were reinstalled (or someone sat in between): sshd shows a new key."""
        self.stop_sshd()
        self._new_host_key()
        self.start_sshd()

    def destroy(self):
        self.stop_sshd()
        self.stop_docker()
        # Whatever the installs started in the namespace (knotd, kea-dhcp4, the agent).
        pids = _run("ip", "netns", "pids", self.namespace, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _run("ip", "link", "del", self.veth_host, check=False)
        _run("ip", "netns", "del", self.namespace, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def lab_hosts(count=1, docker=None):
    """``count`` lab hosts, made in parallel; all removed on exit. ``docker``: images for an engine of their own."""
    run_tag = uuid.uuid4().hex[:4]
    hosts = [LabHost(f"{run_tag}{i:02d}") for i in range(count)]
    try:
        with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
            list(pool.map(LabHost.create, hosts))
            if docker is not None:
                list(pool.map(lambda host: host.start_docker(docker), hosts))
        yield hosts
    finally:
        with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
            list(pool.map(LabHost.destroy, hosts))


@contextlib.contextmanager
def lab_host(docker=None):
    with lab_hosts(1, docker) as hosts:
        yield hosts[0]

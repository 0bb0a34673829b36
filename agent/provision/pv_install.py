#!/usr/bin/env python3
"""Install Steward's agent and components from this setup bundle (standard library only).

    sudo bash install_python3.sh           # once: python3 itself (prints PVOK)
    sudo python3 pv_install.py             # every step, in order
    sudo python3 pv_install.py -e STEP     # one step alone
    python3 pv_install.py --steps-json     # the steps, for the provisioner
    sudo bash prepare_server.sh --user U   # once, so U (no root login) may install: --prepare below

Every path is under one root prefix (--prefix, or $STEWARD_PREFIX, default /), so
an install can go into a throw-away tree. Running it again is safe: the running
components are stopped first and every file is rewritten.
"""
import argparse
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import string
import subprocess
import sys
import tempfile
import time

BUNDLE = os.path.dirname(os.path.abspath(__file__))
COMPONENTS = ("dns", "dhcp", "monitor", "backup")
BINARIES = {"dns": ("knotd", ["knotd", "-V"]), "dhcp": ("kea-dhcp4", ["kea-dhcp4", "-v"])}
# What the bundle copies to <prefix>/opt/steward.
PAYLOAD = ("agent", "vendor", "templates", "systemd", "sudoers", "pv_install.py", "pv_probes.py", "pv_update.py", "pv_diagnose.py",
           "pv_common.sh", "pv_heartbeat.sh", "install_python3.sh", "install_docker.sh", "network_config.sh",
           "prepare_server.sh", "steward_root.sh", "manifest.json") + tuple(
    "%s_pv_%s.sh" % (verb, c) for verb in ("start", "stop") for c in COMPONENTS)
# The code a bundle carries, the same for every server of one Steward release (manifest.json and config/ are
# the server's own). prepare_server.sh approves it; a non-root install runs nothing else as root.
CODE = tuple(name for name in PAYLOAD if name != "manifest.json")
# Fixed paths under the prefix, root-owned: the approved code, the one entry point sudo lets the user run,
# and the sudoers file that says so.
APPROVED = "usr/local/lib/steward"
ENTRY = "usr/local/sbin/steward-root"
SUDOERS = "etc/sudoers.d/steward"
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SAFE_PREFIX = re.compile(r"^/[A-Za-z0-9/._-]*$")
SAFE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


class StepFailed(Exception):
    pass


class Install:
    def __init__(self, prefix, bundle=BUNDLE):
        self.prefix = prefix.rstrip("/")
        self.bundle = bundle
        with open(os.path.join(bundle, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.components = self.manifest["components"]  # {name: version}
        self.runtime = self.manifest["runtime"]

    def path(self, *parts):
        return os.path.join(self.prefix + "/", *parts)

    @property
    def opt(self):
        return self.path("opt", "steward")

    def run(self, argv, cwd=None):
        env = dict(os.environ, STEWARD_PREFIX=self.prefix or "/")
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)
        if done.stdout:
            print(done.stdout.rstrip())
        if done.returncode:
            raise StepFailed("%s exited with %d" % (" ".join(argv), done.returncode))
        return done.stdout

    def script(self, name):
        """A script from the installed copy when there is one, else from the bundle."""
        installed = os.path.join(self.opt, name)
        return installed if os.path.exists(installed) else os.path.join(self.bundle, name)

    # -- the steps, in order -------------------------------------------------
    def network_config(self):
        """write the listen addresses (network.env)"""
        self.run(["bash", os.path.join(self.bundle, "network_config.sh")])

    def install_runtime(self):
        """docker runtime: install Docker; process runtime: check knotd/kea-dhcp4"""
        if self.runtime == "docker":
            self.run(["bash", os.path.join(self.bundle, "install_docker.sh")])
            return
        for component, (binary, version_argv) in BINARIES.items():
            if component not in self.components:
                continue
            if shutil.which(binary) is None:
                raise StepFailed("%s is not installed (process runtime needs it for %s)" % (binary, component))
            print("%s: %s" % (binary, subprocess.check_output(version_argv, universal_newlines=True).strip()))

    def stop_components(self):
        """stop whatever runs from an earlier install"""
        for component in COMPONENTS:
            script = self.script("stop_pv_%s.sh" % component)
            if os.path.exists(script) and os.path.exists(self.path("etc", "steward")):
                self.run(["bash", script])

    def install_files(self):
        """copy the agent and scripts; write its configuration and unit"""
        os.makedirs(self.opt, exist_ok=True)
        for name in PAYLOAD:
            source, target = os.path.join(self.bundle, name), os.path.join(self.opt, name)
            if not os.path.exists(source):
                continue
            if os.path.isdir(source):
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
        etc = self.path("etc", "steward")
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(self.bundle, "config", "agent.json")) as f:
            config = json.load(f)
        config.update(
            spool_dir=self.path("var", "lib", "steward-agent"),
            dnstap_socket=self.path("run", "steward-agent", "dnstap.sock"),
            components_file=self.path("provision", "state", "components.json"),
        )
        for directory in ("var/lib/steward-agent", "run/steward-agent", "provision/state", "provision/libs",
                          "var/log/steward"):
            os.makedirs(self.path(directory), exist_ok=True)
        # Where the product's manual documents it: python3 /provision/libs/pv_update.py asks for an update.
        libs_update = self.path("provision", "libs", "pv_update.py")
        if os.path.lexists(libs_update):
            os.remove(libs_update)
        os.symlink(os.path.join(self.opt, "pv_update.py"), libs_update)
        write_private(os.path.join(etc, "agent.json"), json.dumps(config, indent=2, sort_keys=True) + "\n")
        backup_config = os.path.join(self.bundle, "config", "backup-server.json")
        if "backup" in self.components and os.path.exists(backup_config):
            with open(backup_config) as f:
                backup = json.load(f)
            backup["data_dir"] = self.path("var", "lib", "steward-backup")
            write_private(os.path.join(etc, "backup-server.json"), json.dumps(backup, indent=2, sort_keys=True) + "\n")
        write(os.path.join(etc, "runtime"), self.runtime + "\n")
        values = {"prefix": self.prefix, "opt": self.opt, "etc": etc, "user": self.manifest.get("sudo_user", "steward")}
        write(self.path("etc", "systemd", "system", "pv_heartbeat.service"),
              render(os.path.join(self.bundle, "systemd", "pv_heartbeat.service"), values))
        print("installed into %s" % self.opt)

    def start_heartbeat(self):
        """(re)start the agent's heartbeat (pv_heartbeat.service, or a process without systemd)"""
        self.run(["bash", self.script("pv_heartbeat.sh"), "start"])

    def configure_components(self):
        """write the Knot and Kea configuration and the internal zone"""
        env = read_env(self.path("etc", "steward", "network.env"))
        addresses = env.get("LISTEN_ADDRESSES", "127.0.0.1").split()
        interfaces = env.get("DHCP_INTERFACES", "lo").split()
        values = {
            "etc": self.path("etc", "steward"), "run": self.path("run", "steward"),
            "lib": self.path("var", "lib", "steward"), "log": self.path("var", "log", "steward"),
            "listen": ", ".join("%s@53" % a for a in addresses),
            "dnstap_socket": self.path("run", "steward-agent", "dnstap.sock"),
            "interfaces": json.dumps(interfaces),
        }
        templates = os.path.join(self.bundle, "templates")
        for directory in ("knot/zones", "knot/zones.d", "kea"):
            os.makedirs(self.path("etc", "steward", directory), exist_ok=True)
        write(self.path("etc", "steward", "knot", "knot.conf"), render(os.path.join(templates, "knot.conf"), values))
        shutil.copy2(os.path.join(templates, "pvverify.test.zone"), self.path("etc", "steward", "knot", "zones"))
        write(self.path("etc", "steward", "kea", "kea-dhcp4.json"),
              render(os.path.join(templates, "kea-dhcp4.json"), values))
        print("knot listens on %s; kea on %s" % (values["listen"], ", ".join(interfaces)))

    def _start(self, component):
        if component not in self.components:
            print("%s: not selected for this server, skipped" % component)
            return
        self.run(["bash", self.script("start_pv_%s.sh" % component), "-v", self.components[component]])

    def start_dns(self):
        """start Knot at its version"""
        self._start("dns")

    def start_dhcp(self):
        """start Kea DHCPv4 at its version"""
        self._start("dhcp")

    def start_monitor(self):
        """start the agent (heartbeats, statistics)"""
        self._start("monitor")

    def start_backup(self):
        """start the backup-server daemon (restic repositories, its own users and database)"""
        self._start("backup")

    def _probe(self, component, argv):
        if component not in self.components:
            print("%s: not selected for this server, skipped" % component)
            return
        self.run([sys.executable, self.script("pv_probes.py")] + argv)

    def verify_dns(self):
        """TXT pvverify.test answers PVOK"""
        self._probe("dns", ["dns"])

    def verify_dhcp(self):
        """a relayed DISCOVER/REQUEST leases from 198.51.100.0/24"""
        self._probe("dhcp", ["dhcp"])

    def uninstall(self):
        """stop the components and remove the agent, its files and state"""
        self.stop_components()
        if os.path.exists(self.script("pv_heartbeat.sh")):
            self.run(["bash", self.script("pv_heartbeat.sh"), "stop"])
        for relative in ("opt/steward", "etc/steward", "var/lib/steward", "var/lib/steward-agent", "run/steward",
                         "run/steward-agent", "provision", "etc/systemd/system/pv_heartbeat.service"):
            target = self.path(relative)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
        # var/lib/steward-backup stays: a backup server's stored backups outlive its software; so does what
        # prepare_server.sh made (the entry point, its sudoers file), or the next install could not run.
        print("removed the agent and components from %s" % (self.prefix or "/"))


# name, needs root, method
STEPS = [
    ("network_config", True), ("install_runtime", True), ("stop_components", True), ("install_files", True),
    # The agent first: knotd connects its dnstap writer once, at start, to a reader that must already listen,
    # or the queries it answers before it tries again (seconds later) are never counted.
    ("configure_components", True), ("start_monitor", True), ("start_dns", True), ("start_dhcp", True),
    ("start_backup", True),
    # After the components: the first heartbeat then already reports their versions.
    ("start_heartbeat", True), ("verify_dns", False), ("verify_dhcp", True),
]


def step_help():
    return "\n".join("  %-22s %s" % (name, getattr(Install, name).__doc__) for name, _ in STEPS)


def render(path, values):
    with open(path) as f:
        return string.Template(f.read()).substitute(values)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_private(path, text):
    write(path, text, mode=0o600)  # holds the agent token and RabbitMQ password


def read_env(path):
    values = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key:
                    values[key] = value.strip('"')
    return values


# -- a non-root SSH user: prepared once by root, then installs through the one entry point ----------------
def under(prefix, relative):
    return os.path.join(prefix.rstrip("/") + "/", relative)


def code_digest(root):
    """sha256 of the code (CODE) under ``root``: names, bytes and symlinks as they are, none followed."""
    digest = hashlib.sha256()
    for name in sorted(CODE):
        top = os.path.join(root, name)
        entries = [top]
        if os.path.isdir(top) and not os.path.islink(top):
            for directory, dirs, files in os.walk(top):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                entries += [os.path.join(directory, n) for n in dirs + sorted(files) if not n.endswith(".pyc")]
        for path in entries:
            relative = os.path.relpath(path, root).encode()
            if not os.path.lexists(path):
                digest.update(b"absent\0" + relative + b"\0")
                continue
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                digest.update(b"link\0" + relative + b"\0" + os.readlink(path).encode() + b"\0")
            elif stat.S_ISREG(mode):
                with open(path, "rb") as f:
                    content = f.read()
                digest.update(b"file\0" + relative + b"\0" + str(len(content)).encode() + b"\0" + content)
            elif stat.S_ISDIR(mode):
                digest.update(b"dir\0" + relative + b"\0")
            else:
                digest.update(b"other\0" + relative + b"\0")
    return digest.hexdigest()


def copy_code(source, target):
    """CODE from ``source`` into the new directory ``target`` (symlinks copied as links, never followed)."""
    os.makedirs(target)
    for name in CODE:
        path = os.path.join(source, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.copytree(path, os.path.join(target, name), symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif os.path.lexists(path):
            shutil.copy2(path, os.path.join(target, name), follow_symlinks=False)


def only_root_can_replace(path):
    """Raise when anyone but root could replace ``path``: it and every directory above it owned by root and
    not writable by group or others (a sticky directory such as /tmp is fine: only owners rename there)."""
    current = os.path.abspath(path)
    while True:
        info = os.lstat(current)
        writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        sticky_dir = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX and current != path
        if info.st_uid != 0 or (writable and not sticky_dir):
            raise StepFailed("%s is not root's alone (owner uid %d, mode %o): whoever can write it could replace "
                             "what sudo runs; pick a prefix under root-owned directories"
                             % (current, info.st_uid, stat.S_IMODE(info.st_mode)))
        if current == "/":
            return
        current = os.path.dirname(current)


def ensure_user(user, runtime):
    """the group and the user (made when missing); with the docker runtime, the user in group docker"""
    try:
        grp.getgrnam(user)
        print("group %s: there already" % user)
    except KeyError:
        subprocess.run(["groupadd", user], check=True)
        print("group %s: made" % user)
    try:
        pwd.getpwnam(user)
        print("user %s: there already" % user)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--gid", user, "--shell", "/bin/bash", user], check=True)
        print("user %s: made" % user)
    if runtime == "docker":
        try:
            members = grp.getgrnam("docker").gr_mem
        except KeyError:
            subprocess.run(["groupadd", "docker"], check=True)
            members = []
        if user not in members:
            subprocess.run(["usermod", "--append", "--groups", "docker", user], check=True)
        print("user %s: in group docker (the docker runtime; that group can do what root can)" % user)


def prepare(prefix, user, runtime, bundle=BUNDLE):
    """once, as root: the user, the approved code, the entry point, its sudoers file, /provision"""
    if os.geteuid() != 0:
        raise StepFailed("the preparation runs as root")
    if not USER_NAME.match(user) or user == "root":
        raise StepFailed("%r is not a user name for this (lower case letters, digits, _ and -)" % user)
    if not SAFE_PREFIX.match(prefix):
        raise StepFailed("the prefix %r must be an absolute path of letters, digits and ./_-" % prefix)
    ensure_user(user, runtime)
    approved, entry, sudoers = under(prefix, APPROVED), under(prefix, ENTRY), under(prefix, SUDOERS)
    os.umask(0o022)
    staging = approved + ".new"
    shutil.rmtree(staging, ignore_errors=True)
    copy_code(bundle, staging)
    for directory, dirs, files in os.walk(staging):
        for name in [directory] + [os.path.join(directory, n) for n in dirs + files]:
            os.lchown(name, 0, 0)
            if not os.path.islink(name):
                os.chmod(name, stat.S_IMODE(os.lstat(name).st_mode) & ~0o022)
    prepared = {"user": user, "runtime": runtime, "prefix": prefix, "code_sha256": code_digest(staging)}
    write(os.path.join(staging, "prepared.json"), json.dumps(prepared, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(approved, ignore_errors=True)
    os.makedirs(os.path.dirname(approved), exist_ok=True)
    os.rename(staging, approved)
    with open(os.path.join(bundle, "steward_root.sh")) as f:
        text = f.read()
    for placeholder, value in (("@PREFIX@", prefix), ("@LIB@", approved), ("@OPT@", under(prefix, "opt/steward")),
                               ("@ENTRY@", entry)):
        text = text.replace(placeholder, value)
    write(entry, text, mode=0o755)
    rule = render(os.path.join(bundle, "sudoers", "steward"), {"user": user, "entry": entry})
    write(sudoers + ".new", rule, mode=0o440)
    if shutil.which("visudo"):
        checked = subprocess.run(["visudo", "-c", "-q", "-f", sudoers + ".new"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, universal_newlines=True)
        if checked.returncode:
            os.remove(sudoers + ".new")
            raise StepFailed("visudo refused the sudoers file: %s" % checked.stdout.strip())
    os.replace(sudoers + ".new", sudoers)
    provision = under(prefix, "provision")
    os.makedirs(provision, exist_ok=True)
    os.chown(provision, 0, 0)
    os.chmod(provision, 0o755)
    for path in (approved, entry, sudoers):
        only_root_can_replace(path)
    print("approved code: %s (sha256 %s)" % (approved, prepared["code_sha256"]))
    print("entry point: %s" % entry)
    print("sudoers: %s: %s" % (sudoers, rule.strip().splitlines()[-1]))
    print("provision: %s (root-owned; %s reads it)" % (provision, user))
    print("prepared: %s may now install, update and remove Steward with sudo -n %s" % (user, entry))


def unprepare(prefix):
    """take away the entry point, the approved code and the sudoers file (the user stays)"""
    for relative in (SUDOERS, ENTRY, APPROVED):
        target = under(prefix, relative)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.remove(target)
    print("removed the entry point, the approved code and the sudoers file from %s" % prefix)


def read_upload(path, limit=1 << 20):
    """A JSON object from the non-root user's upload: a regular file (no symlink followed), read once."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise StepFailed("cannot read %s from the upload: %s" % (os.path.basename(path), exc.strerror))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise StepFailed("%s in the upload is not a plain file" % os.path.basename(path))
        data = f.read(limit + 1)
    try:
        value = json.loads(data.decode("utf-8")) if len(data) <= limit else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise StepFailed("%s in the upload is not a JSON object (of at most %d bytes)" % (os.path.basename(path), limit))
    return value


def from_upload(upload, approved=BUNDLE):
    """A root-only bundle made of the approved code (``approved``, this script's own directory) and the
    upload's own files (manifest.json, config/), checked: what the non-root user uploaded never runs."""
    with open(os.path.join(approved, "prepared.json")) as f:
        prepared = json.load(f)
    if code_digest(upload) != prepared["code_sha256"]:
        raise StepFailed("the bundle's scripts are not the ones approved on this server (%s): an administrator "
                         "approves them by running prepare_server.sh from this bundle as root" % approved)
    manifest = read_upload(os.path.join(upload, "manifest.json"))
    components = manifest.get("components")
    if manifest.get("runtime") not in ("docker", "process") or not isinstance(components, dict) or not all(
            c in COMPONENTS and isinstance(v, str) and SAFE_VERSION.match(v) for c, v in components.items()):
        raise StepFailed("manifest.json in the upload names no runtime (docker, process) or other components "
                         "or versions than Steward's")
    manifest["sudo_user"] = prepared["user"]
    staging = tempfile.mkdtemp(prefix="steward-install-")  # 0700, root's
    bundle = os.path.join(staging, "bundle")
    copy_code(approved, bundle)
    write(os.path.join(bundle, "manifest.json"), json.dumps(manifest, indent=2) + "\n")
    for name in ("agent.json", "backup-server.json"):
        path = os.path.join(upload, "config", name)
        if name == "agent.json" or os.path.lexists(path):
            write_private(os.path.join(bundle, "config", name), json.dumps(read_upload(path), indent=2) + "\n")
    return staging, bundle


def prepare_main(argv):
    """prepare_server.sh's arguments (pv_install.py --prepare ...)."""
    with open(os.path.join(BUNDLE, "manifest.json")) as f:
        manifest = json.load(f)
    parser = argparse.ArgumentParser(prog="prepare_server.sh", description=prepare.__doc__)
    parser.add_argument("--user", default=manifest.get("sudo_user", "steward"), help="the SSH user (default %(default)s)")
    parser.add_argument("--runtime", choices=("process", "docker"), default=manifest["runtime"],
                        help="docker: the user joins group docker (default %(default)s, the bundle's)")
    parser.add_argument("--prefix", default=os.environ.get("STEWARD_PREFIX", "/"), help="root of every path (default /)")
    parser.add_argument("--remove", action="store_true", help=unprepare.__doc__)
    args = parser.parse_args(argv)
    try:
        if args.remove:
            unprepare(args.prefix)
        else:
            prepare(args.prefix, args.user, args.runtime)
    except (StepFailed, OSError, subprocess.CalledProcessError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Install Steward's agent and components from this bundle.",
        epilog="steps, in order:\n" + step_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-e", "--exec-only", metavar="STEP", choices=[name for name, _ in STEPS],
                        help="run this one step only")
    parser.add_argument("--prefix", default=os.environ.get("STEWARD_PREFIX", "/"), help="root of every path (default /)")
    parser.add_argument("--steps-json", action="store_true", help="print the steps as JSON and exit")
    parser.add_argument("--uninstall", action="store_true", help="stop the components and remove the agent")
    parser.add_argument("--from-upload", metavar="DIR",
                        help="(steward-root install DIR) the approved code, with DIR's manifest.json and config/")
    parser.add_argument("--prepare", action="store_true", help="prepare_server.sh: see its --help")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--prepare"]:
        return prepare_main(argv[1:])
    args = parser.parse_args(argv)
    if args.steps_json:
        print(json.dumps([{"name": name, "root": root, "summary": getattr(Install, name).__doc__} for name, root in STEPS]))
        return 0
    staging = None
    if args.from_upload:
        try:
            staging, bundle = from_upload(os.path.abspath(args.from_upload))
        except (StepFailed, OSError) as exc:
            print("== step %s failed: %s" % (STEPS[0][0], exc), flush=True)
            return 1
        install = Install(args.prefix, bundle)
    else:
        install = Install(args.prefix)
    try:
        return run_steps(install, args)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def run_steps(install, args):
    if args.uninstall:
        chosen = [("uninstall", True)]
    else:
        chosen = [s for s in STEPS if args.exec_only in (None, s[0])]
    for index, (name, _root) in enumerate(chosen, 1):
        started = time.monotonic()
        print("== step %d of %d: %s" % (index, len(chosen), name), flush=True)
        try:
            getattr(install, name)()
        except (StepFailed, OSError, subprocess.CalledProcessError, KeyError, ValueError) as exc:
            print("== step %s failed: %s" % (name, exc), flush=True)
            return 1
        print("== step %s done in %.2f s" % (name, time.monotonic() - started), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

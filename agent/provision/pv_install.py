#!/usr/bin/env python3
"""Install Steward's agent and components from this setup bundle (standard library only).

    sudo bash install_python3.sh           # once: python3 itself (prints PVOK)
    sudo python3 pv_install.py             # every step, in order
    sudo python3 pv_install.py -e STEP     # one step alone
    python3 pv_install.py --steps-json     # the steps, for the provisioner

Every path is under one root prefix (--prefix, or $STEWARD_PREFIX, default /), so
an install can go into a throw-away tree. Running it again is safe: the running
components are stopped first and every file is rewritten.
"""
import argparse
import json
import os
import shutil
import string
import subprocess
import sys
import time

BUNDLE = os.path.dirname(os.path.abspath(__file__))
COMPONENTS = ("dns", "dhcp", "monitor")
BINARIES = {"dns": ("knotd", ["knotd", "-V"]), "dhcp": ("kea-dhcp4", ["kea-dhcp4", "-v"])}
# What the bundle copies to <prefix>/opt/steward.
PAYLOAD = ("agent", "vendor", "templates", "systemd", "sudoers", "pv_install.py", "pv_probes.py", "pv_update.py", "pv_diagnose.py",
           "pv_common.sh", "pv_heartbeat.sh", "install_python3.sh", "install_docker.sh", "network_config.sh", "manifest.json") + tuple(
    "%s_pv_%s.sh" % (verb, c) for verb in ("start", "stop") for c in COMPONENTS)


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
        """copy the agent and scripts; write its configuration, unit and sudoers"""
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
        for directory in ("var/lib/steward-agent", "run/steward-agent", "provision/state", "var/log/steward"):
            os.makedirs(self.path(directory), exist_ok=True)
        write_private(os.path.join(etc, "agent.json"), json.dumps(config, indent=2, sort_keys=True) + "\n")
        write(os.path.join(etc, "runtime"), self.runtime + "\n")
        values = {"prefix": self.prefix, "opt": self.opt, "etc": etc, "user": self.manifest.get("sudo_user", "steward")}
        write(self.path("etc", "systemd", "system", "pv_heartbeat.service"),
              render(os.path.join(self.bundle, "systemd", "pv_heartbeat.service"), values))
        sudoers = self.path("etc", "sudoers.d", "steward")
        write(sudoers, render(os.path.join(self.bundle, "sudoers", "steward"), values), mode=0o440)
        if shutil.which("visudo"):
            self.run(["visudo", "-c", "-q", "-f", sudoers])
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
                         "run/steward-agent", "provision", "etc/systemd/system/pv_heartbeat.service",
                         "etc/sudoers.d/steward"):
            target = self.path(relative)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
        print("removed the agent and components from %s" % (self.prefix or "/"))


# name, needs root, method
STEPS = [
    ("network_config", True), ("install_runtime", True), ("stop_components", True), ("install_files", True),
    ("configure_components", True), ("start_dns", True), ("start_dhcp", True), ("start_monitor", True),
    # After the components: the first heartbeat then already reports their versions.
    ("start_heartbeat", True), ("verify_dns", False), ("verify_dhcp", True),
]


def parse_marker(line):
    """("started", step) / ("done", step) / ("failed", step, message) for this script's step lines, else None.

    The provisioner runs every step in one process and follows these lines to log each step."""
    if not line.startswith("== step "):
        return None
    rest = line[len("== step "):]
    if " of " in rest and ": " in rest:
        return ("started", rest.split(": ", 1)[1].strip())
    name, _, tail = rest.partition(" ")
    if tail.startswith("done in "):
        return ("done", name)
    if tail.startswith("failed: "):
        return ("failed", name, tail[len("failed: "):])
    return None


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
    args = parser.parse_args(argv)
    if args.steps_json:
        print(json.dumps([{"name": name, "root": root, "summary": getattr(Install, name).__doc__} for name, root in STEPS]))
        return 0
    install = Install(args.prefix)
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

#!/usr/bin/env python3
"""Component updates on a managed server (standard library only, Python 3.8+).

By hand, on the server:

    python3 <prefix>/opt/steward/pv_update.py [--component dns] [--version 2]

(also reachable as ``<prefix>/provision/libs/pv_update.py``) asks the control
plane to update this server (with the agent token from the agent's configuration) and prints the task id at once; the updater then runs
the same steps it runs for a push update, calling this script's subcommands
over SSH:

    pv_update.py state                      running and installed versions (JSON)
    pv_update.py stop COMPONENT             keep the running version's files (first time), stop_pv_<component>.sh
    pv_update.py install IMAGE [--sha256 X] check and unpack an image into versions/<component>/<version>/
    pv_update.py start COMPONENT -v VERSION start_pv_<component>.sh -v VERSION
    pv_update.py activate COMPONENT VERSION put an installed image's files in place (the start scripts call it)
    pv_update.py verify COMPONENT           pv_probes.py: DNS answers PVOK / DHCP leases from 198.51.100.0/24

An *image* (process runtime) is a gzip'd tar file holding ``manifest.json``
(``{"format": 1, "component": "dns", "version": "2", "description": "..."}``)
and a ``files/`` tree laid over the component's configuration directory
``<prefix>/etc/steward``:

* dns: ``files/knot/zones/<domain>.zone`` (at least pvverify.test.zone) and
  optionally ``files/knot/zones.d/*.conf`` (operator zones);
* dhcp: ``files/kea/subnet4.json``, the Kea ``subnet4`` list, put into the
  server's own kea-dhcp4.json (interfaces and paths stay the server's);
* monitor: ``files/agent/...``, laid over ``<prefix>/opt/steward/agent``.

The binaries are the server's (Debian's knotd and kea-dhcp4); a version is a
configuration release. Regular files and directories only; no absolute paths,
no "..", no links. The control plane checks an image with ``read_image``
before it accepts it; this script checks it again before unpacking.
"""
import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

IMAGE_FORMAT = 1
COMPONENTS = ("dns", "dhcp", "monitor")
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024
MAX_MEMBERS = 2000
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
VERSION_PATTERN = re.compile(r"^[0-9][0-9A-Za-z._+-]{0,63}$")
# Where each component's image files land, relative to <prefix>/etc/steward (monitor: <prefix>/opt/steward).
REQUIRED_FILES = {"dns": "files/knot/zones/pvverify.test.zone", "dhcp": "files/kea/subnet4.json", "monitor": None}


class ImageError(ValueError):
    """The file is not a valid image; the message says why, for the operator."""


def _member_problem(member):
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        return f"{name}: absolute paths and '..' are not allowed"
    if not (member.isfile() or member.isdir()):
        return f"{name}: only regular files and directories are allowed"
    if name != MANIFEST and not (name == "files" or name.startswith("files/")):
        return f"{name}: everything but manifest.json must be under files/"
    return None


def read_image(path):
    """Check an image file end to end and return its manifest; raises ImageError.

    Every member is read to its end, so a truncated or corrupt file fails here
    and not halfway through an install.
    """
    manifest, names, unpacked = None, set(), 0
    try:
        # The whole gzip stream first: its end marker and CRC show a file cut short anywhere.
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
        with tarfile.open(path, mode="r:gz") as archive:
            for count, member in enumerate(archive, start=1):
                if count > MAX_MEMBERS:
                    raise ImageError(f"more than {MAX_MEMBERS} files")
                problem = _member_problem(member)
                if problem:
                    raise ImageError(problem)
                unpacked += member.size
                if unpacked > MAX_UNPACKED_BYTES:
                    raise ImageError(f"unpacks to more than {MAX_UNPACKED_BYTES} bytes")
                names.add(member.name.rstrip("/"))
                if not member.isfile():
                    continue
                handle = archive.extractfile(member)
                if member.name == MANIFEST:
                    if member.size > MAX_MANIFEST_BYTES:
                        raise ImageError("manifest.json is too large")
                    manifest = handle.read()
                else:
                    while handle.read(1 << 16):
                        pass
    except ImageError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ImageError(f"not a complete gzip'd tar file ({exc})") from None
    if manifest is None:
        raise ImageError("manifest.json is missing")
    return _check_manifest(manifest, names)


def _check_manifest(raw, names):
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ImageError("manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise ImageError("manifest.json must be a JSON object")
    if manifest.get("format") != IMAGE_FORMAT:
        raise ImageError(f"manifest.json: format must be {IMAGE_FORMAT}")
    if manifest.get("component") not in COMPONENTS:
        raise ImageError(f"manifest.json: component must be one of {', '.join(COMPONENTS)}")
    version = manifest.get("version")
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise ImageError("manifest.json: version must be a string like 2.10 or 3.2.6-1")
    required = REQUIRED_FILES[manifest["component"]]
    if required and required not in names:
        raise ImageError(f"a {manifest['component']} image must hold {required}")
    return manifest


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- the server side ------------------------------------------------------------


def prefix():
    value = os.environ.get("STEWARD_PREFIX", "/").rstrip("/")
    return value


def provision_dir():
    return os.path.join(prefix() + "/", "provision")


def versions_dir(component, version=None):
    base = os.path.join(provision_dir(), "versions", component)
    return os.path.join(base, version) if version else base


def state_file():
    return os.path.join(provision_dir(), "state", "components.json")


def _read_json(path, default):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def state():
    running = _read_json(state_file(), {})
    installed = {}
    for component in COMPONENTS:
        try:
            installed[component] = sorted(os.listdir(versions_dir(component)))
        except OSError:
            installed[component] = []
    return {"running": running, "installed": installed}


def _config_root(component):
    if component == "monitor":
        return os.path.join(prefix() + "/", "opt", "steward")
    return os.path.join(prefix() + "/", "etc", "steward")


def _snapshot_current(component):
    """Keep the running version's files before the first update, so a rollback can restore it."""
    version = _read_json(state_file(), {}).get(component)
    if not version or os.path.isdir(versions_dir(component, version)):
        return
    root = _config_root(component)
    target = tempfile.mkdtemp(dir=_ensure(versions_dir(component)))
    files = os.path.join(target, "files")
    if component == "dns":
        for sub in ("zones", "zones.d"):
            if os.path.isdir(os.path.join(root, "knot", sub)):
                shutil.copytree(os.path.join(root, "knot", sub), os.path.join(files, "knot", sub))
    elif component == "dhcp":
        config = _read_json(os.path.join(root, "kea", "kea-dhcp4.json"), {})
        os.makedirs(os.path.join(files, "kea"))
        with open(os.path.join(files, "kea", "subnet4.json"), "w") as handle:
            json.dump(config.get("Dhcp4", {}).get("subnet4", []), handle, indent=2)
    elif os.path.isdir(os.path.join(root, "agent")):
        shutil.copytree(os.path.join(root, "agent"), os.path.join(files, "agent"))
    with open(os.path.join(target, MANIFEST), "w") as handle:
        json.dump({"format": IMAGE_FORMAT, "component": component, "version": version,
                   "description": "kept from the running installation before the first update"}, handle)
    os.rename(target, versions_dir(component, version))


def _ensure(path):
    os.makedirs(path, exist_ok=True)
    return path


def install(image, expected_sha256=None):
    if expected_sha256 and sha256_of(image) != expected_sha256:
        raise ImageError("checksum mismatch: the transfer was damaged")
    manifest = read_image(image)
    component, version = manifest["component"], manifest["version"]
    final = versions_dir(component, version)
    staging = tempfile.mkdtemp(dir=_ensure(versions_dir(component)), prefix=".staging-")
    try:
        with tarfile.open(image, mode="r:gz") as archive:
            for member in archive:  # read_image checked every member's name and type
                archive.extract(member, staging, set_attrs=False)
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"component": component, "version": version}


def _overlay(source, target):
    for directory, _, files in os.walk(source):
        relative = os.path.relpath(directory, source)
        os.makedirs(os.path.join(target, relative), exist_ok=True)
        for name in files:
            shutil.copyfile(os.path.join(directory, name), os.path.join(target, relative, name))


def activate(component, version):
    """Put an installed version's files in place; the start script then starts the component."""
    files = os.path.join(versions_dir(component, version), "files")
    if not os.path.isdir(files):
        raise ImageError(f"{component} {version} is not installed on this server")
    root = _config_root(component)
    if component == "dns":
        zones = os.path.join(root, "knot", "zones")
        shutil.rmtree(zones, ignore_errors=True)  # a zone the version does not hold must not linger
        _overlay(os.path.join(files, "knot"), os.path.join(root, "knot"))
    elif component == "dhcp":
        path = os.path.join(root, "kea", "kea-dhcp4.json")
        config = _read_json(path, None)
        if config is None:
            raise ImageError(f"{path} is missing: install the DHCP component first")
        config["Dhcp4"]["subnet4"] = _read_json(os.path.join(files, "kea", "subnet4.json"), [])
        with open(path + ".tmp", "w") as handle:
            json.dump(config, handle, indent=2)
        os.replace(path + ".tmp", path)
    else:
        _overlay(files, root)


def _script(name):
    """The installed copy of a bundle script (pv_install.py's install_files puts them in opt/steward)."""
    return os.path.join(prefix() + "/", "opt", "steward", name)


def _run(argv):
    env = dict(os.environ, STEWARD_PREFIX=prefix() or "/")
    completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                               timeout=120, env=env)
    sys.stdout.write(completed.stdout)
    return completed.returncode


def run_script(name, *args):
    return _run(["bash", _script(name)] + list(args))


def verify(component):
    """The install's own probes: a component passes an update by the same test it passed the install."""
    if component == "monitor":
        return _run(["bash", "-c", 'kill -0 "$(cat "$STEWARD_PREFIX/run/steward/agent.pid")"'])
    return _run([sys.executable, _script("pv_probes.py"), component])


# -- by hand: ask the control plane ---------------------------------------------


def request_update(component=None, version=None, config_path=None):
    config = _read_json(config_path or os.path.join(prefix() + "/", "etc", "steward", "agent.json"), None)
    if not config:
        raise SystemExit("cannot read the agent configuration; is this server installed?")
    base = config.get("monitoring_url")
    if not base:
        raise SystemExit("the agent configuration names no monitoring_url (the control plane's API)")
    body = {k: v for k, v in (("component", component), ("version", version)) if v}
    request = urllib.request.Request(
        f"{base.rstrip('/')}/api/v2/servers/{config['server_id']}/actions/push-update",
        data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {config['agent_token']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"the control plane refused: {exc.code} {exc.read().decode(errors='replace')}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--component", choices=COMPONENTS, help="by hand: update only this component")
    parser.add_argument("--version", help="by hand: update to this version (default: the newest)")
    parser.add_argument("--config", help="by hand: the agent configuration (default <prefix>/etc/steward/agent.json)")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("state")
    for name in ("stop", "verify"):
        commands.add_parser(name).add_argument("component", choices=COMPONENTS)
    start = commands.add_parser("start")
    start.add_argument("component", choices=COMPONENTS)
    start.add_argument("-v", dest="start_version", required=True)
    installing = commands.add_parser("install")
    installing.add_argument("image")
    installing.add_argument("--sha256")
    activating = commands.add_parser("activate")
    activating.add_argument("component", choices=COMPONENTS)
    activating.add_argument("activate_version")
    args = parser.parse_args(argv)

    try:
        if args.command is None:
            task = request_update(args.component, args.version, args.config)
            print(f"update task {task['task_id']} queued; follow it with: steward tasks show {task['task_id']}")
            return 0
        if args.command == "state":
            print(json.dumps(state(), sort_keys=True))
            return 0
        if args.command == "stop":
            _snapshot_current(args.component)  # before the stop script forgets which version ran
            return run_script(f"stop_pv_{args.component}.sh")
        if args.command == "start":
            return run_script(f"start_pv_{args.component}.sh", "-v", args.start_version)
        if args.command == "install":
            print(json.dumps(install(args.image, args.sha256)))
            return 0
        if args.command == "activate":
            activate(args.component, args.activate_version)
            return 0
        return verify(args.component)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Component updates on a managed server (standard library only, Python 3.8+).

By hand, on the server:

    python3 <prefix>/opt/steward/pv_update.py [--component dns] [--version 2]

(also reachable as ``<prefix>/provision/libs/pv_update.py``) asks the control
plane to update this server (with the agent token from the agent's configuration) and prints the task id at once; the updater then runs
the same steps it runs for a push update, calling this script's subcommands
over SSH:

    pv_update.py state                      running and installed versions (JSON)
    pv_update.py stop COMPONENT             keep the running version's files and complete state, stop_pv_<component>.sh
    pv_update.py install IMAGE [--sha256 X] check and unpack an image into versions/<component>/<version>/
    pv_update.py start COMPONENT -v VERSION start_pv_<component>.sh -v VERSION
    pv_update.py activate COMPONENT VERSION put an installed image's files in place (the start scripts call it)
    pv_update.py verify COMPONENT           pv_probes.py: DNS answers PVOK / DHCP leases from 198.51.100.0/24,
                                            and again after --settle seconds (a process that dies soon fails)
    pv_update.py rollback COMPONENT -v V    stop, put back the complete state kept when V was stopped, start V
    pv_update.py detach RUN_ID -- ARGS...   run "pv_update.py ARGS" apart from the SSH session (it survives a
                                            dropped connection); its output and exit status stay in provision/runs
    pv_update.py result RUN_ID [--wait S]   that run's output and exit status (75: still running after S seconds)

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
import time
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
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{8,64}$")
STILL_RUNNING = 75  # `result`: the run has not ended yet (EX_TEMPFAIL)
RUNS_KEPT_SECONDS = 7 * 24 * 3600
# How long a started component must keep answering before verify passes: one that dies seconds later fails.
DEFAULT_SETTLE_SECONDS = 5.0
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


# -- the complete state of a component, kept at each stop and put back by a rollback ----------

def kept_dir(component):
    return os.path.join(provision_dir(), "kept", component)


def _state_paths(component):
    """Everything of a component that a release may change: its whole configuration directory (what a
    release added is removed by putting the directory back) and, for the docker runtime, its image record."""
    etc = os.path.join(prefix() + "/", "etc", "steward")
    own = {"dns": os.path.join(etc, "knot"), "dhcp": os.path.join(etc, "kea"),
           "monitor": os.path.join(_config_root("monitor"), "agent")}[component]
    return {"config": own, "image": os.path.join(etc, "images", component)}


def keep_state(component):
    """Copy the running version's complete state aside; the copy of an earlier stop stays when none runs."""
    version = _read_json(state_file(), {}).get(component)
    if not version:
        return None
    target = tempfile.mkdtemp(dir=_ensure(os.path.dirname(kept_dir(component))), prefix=f".{component}-")
    for name, path in _state_paths(component).items():
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(target, name), symlinks=True)
        elif os.path.isfile(path):
            shutil.copy2(path, os.path.join(target, name))
    with open(os.path.join(target, "version"), "w") as handle:
        handle.write(version)
    old = kept_dir(component) + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(kept_dir(component)):
        os.rename(kept_dir(component), old)
    os.rename(target, kept_dir(component))
    shutil.rmtree(old, ignore_errors=True)
    return version


def restore_state(component, version):
    """Put back what keep_state kept of ``version``; False when no copy of that version is kept."""
    kept = kept_dir(component)
    try:
        with open(os.path.join(kept, "version")) as handle:
            if handle.read().strip() != version:
                return False
    except OSError:
        return False
    for name, path in _state_paths(component).items():
        source = os.path.join(kept, name)
        aside = path + ".failed-release"
        shutil.rmtree(aside, ignore_errors=True)
        if os.path.isdir(path):
            os.rename(path, aside)
        elif os.path.isfile(path):
            os.replace(path, aside)
        if os.path.isdir(source):
            shutil.copytree(source, path, symlinks=True)
        elif os.path.isfile(source):
            shutil.copy2(source, path)
        if os.path.isdir(aside):
            shutil.rmtree(aside)
        elif os.path.isfile(aside):
            os.remove(aside)
    return True


def rollback(component, version):
    status = run_script(f"stop_pv_{component}.sh")
    if status != 0:
        return status
    if restore_state(component, version):
        print(f"{component}: the complete state kept when {version} was stopped is back in place")
    else:
        print(f"{component}: no complete state of {version} was kept; starting it from its release files")
    return run_script(f"start_pv_{component}.sh", "-v", version)


# -- runs apart from the SSH session -------------------------------------------------------

def runs_dir(run_id=None):
    base = os.path.join(provision_dir(), "runs")
    return os.path.join(base, run_id) if run_id else base


def _check_run_id(run_id):
    if not RUN_ID_PATTERN.match(run_id):
        raise ImageError(f"{run_id!r} is not a run id (hex digits)")


def detach(run_id, args):
    """Start ``pv_update.py ARGS`` in a session of its own; starting the same run id again does nothing."""
    _check_run_id(run_id)
    _prune_runs()
    directory = runs_dir(run_id)
    try:
        os.makedirs(directory)
    except FileExistsError:
        print(f"run {run_id} was started already")
        return 0
    script = ('"$@" >"$RUN_DIR/output" 2>&1; echo $? >"$RUN_DIR/status.tmp"; '
              'mv "$RUN_DIR/status.tmp" "$RUN_DIR/status"')
    env = dict(os.environ, STEWARD_PREFIX=prefix() or "/", RUN_DIR=directory)
    subprocess.Popen(["sh", "-c", script, "sh", sys.executable, os.path.abspath(__file__)] + list(args),
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True, env=env)
    print(f"run {run_id} started")
    return 0


def result(run_id, wait_seconds):
    _check_run_id(run_id)
    directory = runs_dir(run_id)
    if not os.path.isdir(directory):
        print(f"error: no run {run_id} on this server", file=sys.stderr)
        return 2
    deadline = time.monotonic() + wait_seconds
    status_path = os.path.join(directory, "status")
    while not os.path.exists(status_path):
        if time.monotonic() >= deadline:
            return STILL_RUNNING
        time.sleep(0.2)
    with open(os.path.join(directory, "output"), errors="replace") as handle:
        sys.stdout.write(handle.read())
    with open(status_path) as handle:
        return int(handle.read().strip() or 1)


def _prune_runs():
    cutoff = time.time() - RUNS_KEPT_SECONDS
    try:
        names = os.listdir(runs_dir())
    except OSError:
        return
    for name in names:
        path = runs_dir(name)
        if os.path.exists(os.path.join(path, "status")) and os.path.getmtime(path) < cutoff:
            shutil.rmtree(path, ignore_errors=True)


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


def verify(component, settle_seconds=DEFAULT_SETTLE_SECONDS):
    """The install's own probes: a component passes an update by the same test it passed the install, now and
    again ``settle_seconds`` later (a release that starts, answers once and dies does not pass)."""
    if component == "monitor":
        argv = ["bash", "-c", 'kill -0 "$(cat "$STEWARD_PREFIX/run/steward/agent.pid")"']
    else:
        argv = [sys.executable, _script("pv_probes.py"), component]
    status = _run(argv)
    if status != 0 or settle_seconds <= 0:
        return status
    time.sleep(settle_seconds)
    print(f"{component}: checking again after {settle_seconds:g} s")
    return _run(argv)


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
        with urllib.request.urlopen(request, timeout=30, context=_tls_context(base, config.get("verify_ca"))) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"the control plane refused: {exc.code} {exc.read().decode(errors='replace')}")
    except urllib.error.URLError as exc:
        raise SystemExit(f"cannot reach the control plane at {base}: {exc.reason}")


def _tls_context(url, verify_ca):
    """HTTPS as the agent's heartbeat does it (the admin setting Verify CA, agent/tls.py)."""
    if not url.startswith("https:"):
        return None
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))  # the agent package is installed beside it
    from agent.tls import client_context

    return client_context(verify_ca)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--component", choices=COMPONENTS, help="by hand: update only this component")
    parser.add_argument("--version", help="by hand: update to this version (default: the newest)")
    parser.add_argument("--config", help="by hand: the agent configuration (default <prefix>/etc/steward/agent.json)")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("state")
    commands.add_parser("stop").add_argument("component", choices=COMPONENTS)
    verifying = commands.add_parser("verify")
    verifying.add_argument("component", choices=COMPONENTS)
    verifying.add_argument("--settle", type=float, default=DEFAULT_SETTLE_SECONDS,
                           help="probe again after this many seconds (default %(default)s; 0: once)")
    for name in ("start", "rollback"):
        starting = commands.add_parser(name)
        starting.add_argument("component", choices=COMPONENTS)
        starting.add_argument("-v", dest="start_version", required=True)
    detaching = commands.add_parser("detach")
    detaching.add_argument("run_id")
    detaching.add_argument("run_args", nargs=argparse.REMAINDER)
    results = commands.add_parser("result")
    results.add_argument("run_id")
    results.add_argument("--wait", type=float, default=0, help="seconds to wait for the run to end")
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
            keep_state(args.component)
            return run_script(f"stop_pv_{args.component}.sh")
        if args.command == "start":
            return run_script(f"start_pv_{args.component}.sh", "-v", args.start_version)
        if args.command == "rollback":
            return rollback(args.component, args.start_version)
        if args.command == "detach":
            run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
            return detach(args.run_id, run_args)
        if args.command == "result":
            return result(args.run_id, args.wait)
        if args.command == "install":
            print(json.dumps(install(args.image, args.sha256)))
            return 0
        if args.command == "activate":
            activate(args.component, args.activate_version)
            return 0
        return verify(args.component, args.settle)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())

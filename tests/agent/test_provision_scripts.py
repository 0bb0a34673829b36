"""The on-server scripts as an operator runs them: -h/--help prints help and changes nothing, the start
scripts take the product's long options, messages say what happened, install_python3.sh wants 3.8."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from services.provisioner.bundle import PROVISION_DIR

SCRIPTS = sorted(p.name for p in PROVISION_DIR.iterdir() if p.suffix in (".sh", ".py") and p.name != "pv_common.sh")


def _run(prefix, *argv, env=None):
    script = PROVISION_DIR / argv[0]
    command = ([sys.executable] if script.suffix == ".py" else ["bash"]) + [str(script), *argv[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, STEWARD_PREFIX=str(prefix), **(env or {})))


@pytest.fixture
def running_dns(tmp_path):
    """A process-runtime prefix where "knotd" runs (a process of ours in its pid file) and the record says so."""
    (tmp_path / "etc" / "steward").mkdir(parents=True)
    (tmp_path / "etc" / "steward" / "runtime").write_text("process\n")
    (tmp_path / "run" / "steward" / "knot").mkdir(parents=True)
    (tmp_path / "provision" / "state").mkdir(parents=True)
    state = tmp_path / "provision" / "state" / "components.json"
    state.write_text(json.dumps({"dns": "3.2.6"}))
    process = subprocess.Popen(["sleep", "300"])
    (tmp_path / "run" / "steward" / "knot" / "knot.pid").write_text(str(process.pid))
    yield tmp_path, process, state
    process.kill()
    process.wait()


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_script_prints_help_and_changes_nothing(running_dns, script, flag):
    prefix, process, state = running_dns
    before = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*"))
    done = _run(prefix, script, flag)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage" in done.stdout.lower(), done.stdout
    assert process.poll() is None, f"{script} {flag} stopped the running component"
    assert json.loads(state.read_text()) == {"dns": "3.2.6"}
    assert sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*")) == before
    lines = done.stdout.splitlines()
    assert "PVOK" not in lines and not [line for line in lines if line.startswith('{"name"')]  # no install, no check


def test_start_scripts_take_the_long_options(tmp_path):
    for argv in (["--version", "9.9"], ["--version=9.9"], ["-v", "9.9", "--bash"]):
        done = _run(tmp_path, "start_pv_dns.sh", *argv)
        # Parsed: it goes on to look for the configuration, which this empty prefix has not.
        assert done.returncode == 1 and "knot.conf is missing" in done.stderr, (argv, done.stderr)
    unknown = _run(tmp_path, "start_pv_dns.sh", "--frobnicate")
    assert unknown.returncode == 2 and "usage" in unknown.stderr.lower()
    missing = _run(tmp_path, "start_pv_dns.sh")
    assert missing.returncode == 2 and "--version" in missing.stderr


def test_stop_says_what_it_did(running_dns):
    prefix, process, state = running_dns
    stopped = _run(prefix, "stop_pv_dns.sh")
    assert stopped.returncode == 0 and f"knotd stopped (pid {process.pid})" in stopped.stdout
    assert "dns stopped" in stopped.stdout
    process.wait(10)
    again = _run(prefix, "stop_pv_dns.sh")
    assert again.returncode == 0 and "dns was not running" in again.stdout and "stopped" not in again.stdout


def test_install_python3_wants_3_8(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "readlink", "cat", "sed", "basename"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    fake = bin_dir / "python3"  # a Python 3.7 and no package manager on the PATH
    fake.write_text('#!/bin/sh\n[ "$1" = -V ] && { echo "Python 3.7.3"; exit 0; }\nexit 1\n')
    fake.chmod(0o755)
    done = subprocess.run(["/bin/bash", str(PROVISION_DIR / "install_python3.sh")], capture_output=True, text=True,
                          env={"PATH": str(bin_dir)}, timeout=60)
    assert done.returncode == 1 and "PVOK" not in done.stdout
    assert "3.8 or later" in done.stderr and "Python 3.7.3" in done.stderr, done.stderr

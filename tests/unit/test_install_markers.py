"""The provisioner follows pv_install.py through its output: the steps it lists with
--steps-json and the lines it prints around each step. Both run the real script."""
import json
import shutil
import subprocess
import sys

from agent.provision import pv_install
from services.provisioner.bundle import PROVISION_DIR
from services.provisioner.install import BEFORE, install_steps, step_marker


def test_the_push_install_runs_the_scripts_steps_between_its_own():
    steps = install_steps()
    pv_steps = steps[len(BEFORE):len(BEFORE) + len(pv_install.STEPS)]
    assert pv_steps == [tuple(step) for step in pv_install.STEPS]


def _run_step(tmp_path, components, path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copy(PROVISION_DIR / "pv_install.py", bundle)
    (bundle / "manifest.json").write_text(json.dumps({"runtime": "process", "components": components}))
    done = subprocess.run([sys.executable, str(bundle / "pv_install.py"), "--prefix", str(tmp_path / "root"),
                           "-e", "install_runtime"], capture_output=True, text=True, env={"PATH": path}, timeout=60)
    return done.returncode, [step_marker(line) for line in done.stdout.splitlines()]


def test_the_lines_around_a_step_that_passes(tmp_path):
    status, markers = _run_step(tmp_path, {}, "/usr/bin:/bin")
    assert status == 0
    assert [m for m in markers if m] == [("started", "install_runtime"), ("done", "install_runtime")]


def test_the_lines_around_a_step_that_fails(tmp_path):
    # The process runtime needs knotd for dns; with no PATH it cannot find it.
    status, markers = _run_step(tmp_path, {"dns": "3.2.6"}, "/nonexistent")
    assert status == 1
    assert [m for m in markers if m] == [
        ("started", "install_runtime"),
        ("failed", "install_runtime", "knotd is not installed (process runtime needs it for dns)"),
    ]

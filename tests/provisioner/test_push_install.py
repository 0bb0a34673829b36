"""End to end, as an operator would: register a lab host through the API, push-install it,
watch the progress, and check that Knot answers and Kea leases for real."""
import io
import json
import logging
import os
import tarfile
import time

from agent.provision import pv_probes as probes
from cli import main as cli
from gateway.routes import PREFIX
from services.provisioner.bundle import PROVISION_DIR
from services.provisioner.install import install_steps
from tests.provisioner.conftest import delete_and_see_it_uninstalled, processes, push_install, register, wait_for_task

STEPS = [name for name, _ in install_steps()]
VERSIONS = {"dns": "3.2.6", "dhcp": "2.2.0", "monitor": "1.0.0"}


def _lease(host):
    """A relayed DISCOVER/REQUEST from inside the lab host, as its own verification does."""
    done = host.exec("python3", str(PROVISION_DIR / "pv_probes.py"), "dhcp", check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_push_install_as_root_then_again_with_a_key(api, lab, provisioner_events):
    server = register(api, lab)
    task = push_install(api, server["id"])
    assert task["state"] == "queued" and task["step_count"] == len(STEPS)

    finished, seen = wait_for_task(api, task["id"])
    assert finished["state"] == "succeeded", finished["error"]
    # The provisioner answered while the install ran: long work does not block its RPCs.
    assert any(t["state"] == "running" and 0 < t["step_index"] < len(STEPS) for t in seen)

    events = provisioner_events.until("install_finished", task_id=task["id"])
    progress = [p for name, p in events if name == "install_progress"]
    assert [(p["step_index"], p["status"]) for p in progress] == [
        (k, status) for k in range(1, len(STEPS) + 1) for status in ("started", "succeeded")]
    assert [p["step"] for p in progress[::2]] == STEPS
    assert events[-1][0] == "install_finished" and events[-1][1]["state"] == "succeeded"
    assert all(lab.root_password not in json.dumps(p) for _, p in events)

    log = api.simulate_get(f"{PREFIX}/tasks/{task['id']}/log").json
    assert [s["name"] for s in log["steps"]] == STEPS
    assert all(s["state"] == "succeeded" and s["duration_ms"] is not None and s["finished_at"] for s in log["steps"])
    by_name = {s["name"]: s for s in log["steps"]}
    assert "pinned on first use" in by_name["connect"]["output"]
    assert "PVOK" in by_name["install_python3"]["output"]
    assert "pvverify.test TXT PVOK" in by_name["verify_dns"]["output"]
    assert "leased 198.51.100." in by_name["verify_dhcp"]["output"]

    # What a user sees: DNS answers PVOK from the lab host, Kea leases, the list shows versions.
    assert probes.probe_dns(lab.address).startswith("pvverify.test TXT PVOK")
    assert "leased 198.51.100." in _lease(lab)
    listed = api.simulate_get(f"{PREFIX}/servers", params={"search": server["name"]}).json["items"][0]
    assert listed["versions"] == VERSIONS and listed["state"] == "running"

    # Again, with a key instead of the password: the running components are stopped first. (A non-root
    # user installs after prepare_server.sh: tests/updater/test_non_root.py.)
    changed = api.simulate_patch(f"{PREFIX}/servers/{server['id']}", json={"ssh_private_key": lab.private_key})
    assert changed.status_code == 200, changed.text
    again, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    assert again["state"] == "succeeded", again["error"]
    connect = api.simulate_get(f"{PREFIX}/tasks/{again['id']}/log").json["steps"][1]["output"]
    assert f"root@{lab.address}" in connect and "directly as root" in connect and "matches the pinned key" in connect
    assert processes(lab, "knotd") == "1" and processes(lab, "kea-dhcp4") == "1"
    assert probes.probe_dns(lab.address).startswith("pvverify.test TXT PVOK")
    # The extracted bundle (it holds the agent token) does not stay in the login's home.
    assert not (lab.root / "home" / "root" / f"setup-{server['id']}").exists()


def test_cli_install_draws_progress_then_delete_removes_everything(api, api_url, admin_token, lab, capsys):
    server = register(api, lab, components=["dns"])
    assert cli.main(["--url", api_url, f"--token={admin_token}", "servers", "install", server["name"]]) == 0
    out = capsys.readouterr().out
    bars = [line for line in out.splitlines() if line.startswith("[")]
    steps = [int(line.split("]")[1].split("/")[0]) for line in bars]
    assert steps == sorted(steps) and bars[-1].startswith("[" + "#" * 30 + "]") and bars[-1].endswith("succeeded")
    assert f"{server['name']} installed" in out
    assert processes(lab, "knotd") == "1"

    delete_and_see_it_uninstalled(api, lab, server)
    assert api.simulate_get(f"{PREFIX}/servers/{server['id']}").status_code == 404


def test_a_failed_step_stops_the_install_with_its_output(api, lab, provisioner_events):
    # An operator zone Knot cannot read: the DNS component cannot start.
    zones = lab.prefix / "etc" / "steward" / "knot" / "zones.d"
    zones.mkdir(parents=True)
    (zones / "broken.conf").write_text("zone:\n  - domain: [not valid\n")
    server = register(api, lab, components=["dns"])
    failed, _ = wait_for_task(api, push_install(api, server["id"])["id"])

    position = STEPS.index("start_dns") + 1
    assert failed["state"] == "failed" and failed["step_index"] == position
    assert failed["error"].startswith(f"step {position} of {len(STEPS)} (start_dns) failed:")
    assert "knotd" in failed["error"]
    steps = api.simulate_get(f"{PREFIX}/tasks/{failed['id']}/log").json["steps"]
    assert [s["name"] for s in steps] == STEPS[:position] and steps[-1]["state"] == "failed"
    events = provisioner_events.until("install_finished", task_id=failed["id"])
    assert events[-2][1]["status"] == "failed" and events[-2][1]["step"] == "start_dns"
    assert events[-1][0] == "install_finished" and events[-1][1]["state"] == "failed"


def test_changed_host_key_is_refused_clearly(api, lab):
    server = register(api, lab, components=["dns"])
    first, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    assert first["state"] == "succeeded", first["error"]

    lab.rotate_host_key()
    refused, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    assert refused["state"] == "failed" and refused["step_index"] == STEPS.index("connect") + 1
    assert "host key" in refused["error"] and "changed" in refused["error"] and "SHA256:" in refused["error"]

    # The operator knows the server was reinstalled: forgetting the pin lets the next install pin the new key.
    api.simulate_post(f"{PREFIX}/users", json={"name": "watcher", "role": "viewer"})
    viewer = {"Authorization": f"Bearer {api.simulate_post(f'{PREFIX}/tokens', json={'user': 'watcher'}).json['token']}"}
    assert api.simulate_delete(f"{PREFIX}/servers/{server['id']}/host-key", headers=viewer).json["error"] == \
        "permission_denied"
    assert api.simulate_delete(f"{PREFIX}/servers/999999/host-key").status_code == 404
    forgotten = api.simulate_delete(f"{PREFIX}/servers/{server['id']}/host-key")
    assert forgotten.status_code == 200 and forgotten.json == {"server_id": server["id"], "forgotten": True}
    again, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    assert again["state"] == "succeeded", again["error"]
    connect = api.simulate_get(f"{PREFIX}/tasks/{again['id']}/log").json["steps"][STEPS.index("connect")]["output"]
    assert "pinned on first use" in connect

    # Delete cannot reach a server whose key changed again, and says so; the record goes all the same.
    lab.rotate_host_key()
    deleted = api.simulate_delete(f"{PREFIX}/servers/{server['id']}")
    assert deleted.status_code == 200
    assert deleted.json["cleanup"]["uninstalled"] is False
    assert any("host key" in p for p in deleted.json["cleanup"]["problems"])


def test_bad_credentials_fail_fast_with_no_secret_in_logs(api, lab, caplog, provisioner_events):
    wrong = "wrong-Passw0rd-" + os.urandom(4).hex()
    server = register(api, lab, ssh_password=wrong)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    failed, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    elapsed = time.monotonic() - started

    assert failed["state"] == "failed"
    assert "authentication failed" in failed["error"] and f"root@{lab.address}" in failed["error"]
    assert elapsed < 30, f"took {elapsed:.1f} s"  # no retries: a rejected password fails at once
    log = api.simulate_get(f"{PREFIX}/tasks/{failed['id']}/log").text
    for text in (caplog.text, log, json.dumps(provisioner_events()), json.dumps(failed)):
        assert wrong not in text


def test_manual_install_from_the_bundle_reaches_the_same_state(api, api_url, admin_token, lab, tmp_path, capsys):
    server = register(api, lab)
    other = register(api, lab, name="other-server")
    response = api.simulate_get(f"{PREFIX}/servers/{server['id']}/bundle")
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].endswith(f'setup-{server["id"]}.tar"')
    # The operator's way: the CLI writes the same bundle to a file.
    assert cli.main(["--url", api_url, f"--token={admin_token}", "servers", "bundle", server["name"],
                     "-o", str(tmp_path / "setup.tar")]) == 0
    assert "sudo python3 pv_install.py" in capsys.readouterr().out
    data = (tmp_path / "setup.tar").read_bytes()

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        config = json.load(tar.extractfile(f"setup-{server['id']}/config/agent.json"))
    for expected in ("pv_install.py", "install_python3.sh", "install_docker.sh", "network_config.sh", "pv_probes.py",
                     "start_pv_dns.sh", "stop_pv_dns.sh", "start_pv_dhcp.sh", "stop_pv_dhcp.sh", "start_pv_monitor.sh",
                     "stop_pv_monitor.sh", "pv_heartbeat.sh", "systemd/pv_heartbeat.service", "sudoers/steward", "agent/__main__.py",
                     "prepare_server.sh", "steward_root.sh",
                     "vendor/pika/__init__.py"):
        assert f"setup-{server['id']}/{expected}" in names, expected
    assert config["server_id"] == server["id"] and config["agent_token"]
    vhost = config["rabbitmq"]["vhost"]
    assert config["rabbitmq"]["user"] == f"steward-agent-{vhost}-{server['id']}" and config["rabbitmq"]["password"]
    assert "test-secret-key" not in data.decode("latin-1")  # the control plane's SECRET_KEY
    assert f"steward-agent-{vhost}-{other['id']}" not in data.decode("latin-1")

    home = lab.root / "home" / "root"
    (home / "setup.tar").write_bytes(data)
    bundle_dir = home / f"setup-{server['id']}"
    env = f"cd {home} && export STEWARD_PREFIX={lab.prefix} && "
    python = lab.exec("sh", "-c", env + f"tar -xf setup.tar && bash {bundle_dir}/install_python3.sh")
    assert python.stdout.split()[-1] == "PVOK"
    listed = lab.exec("python3", str(bundle_dir / "pv_install.py"), "-h").stdout
    assert "verify_dhcp" in listed and "start_dns" in listed
    done = lab.exec("sh", "-c", env + f"python3 {bundle_dir}/pv_install.py", check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    assert probes.probe_dns(lab.address).startswith("pvverify.test TXT PVOK")
    assert "leased 198.51.100." in _lease(lab)
    state = json.loads((lab.prefix / "provision" / "state" / "components.json").read_text())
    assert state == VERSIONS
    installed = json.loads((lab.prefix / "etc" / "steward" / "agent.json").read_text())
    assert oct((lab.prefix / "etc" / "steward" / "agent.json").stat().st_mode & 0o777) == "0o600"
    assert installed["components_file"] == str(lab.prefix / "provision" / "state" / "components.json")

    # One step alone, as an operator would re-run it.
    alone = lab.exec("sh", "-c", env + f"python3 {bundle_dir}/pv_install.py -e verify_dns", check=False)
    assert alone.returncode == 0 and "step 1 of 1: verify_dns" in alone.stdout


def test_bad_input_is_refused(api, lab):
    server = register(api, lab)
    refused = api.simulate_post(f"{PREFIX}/servers/{server['id']}/actions/push-install", json={"force": True})
    assert refused.status_code == 400 and refused.json["error"] == "invalid_input"
    assert api.simulate_post(f"{PREFIX}/servers/999999/actions/push-install").status_code == 404
    assert api.simulate_get(f"{PREFIX}/tasks/{'0' * 32}").json["error"] == "task_not_found"
    assert api.simulate_get(f"{PREFIX}/tasks/nope").status_code == 404  # no task id looks like that
    assert api.simulate_get(f"{PREFIX}/servers/999999/bundle").status_code == 404

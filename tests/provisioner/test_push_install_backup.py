"""A backup server installed as an operator would: the backup component is the backup-server
daemon, pushed like DNS and DHCP; the backup service's enrollment works against it, once."""
import requests

from gateway.routes import PREFIX
from services.provisioner.bundle import backup_server_version
from shared.crypto import backup_enrollment_token
from tests.provisioner.conftest import push_install, register, wait_for_task


def test_the_backup_component_installs_the_daemon_which_takes_the_enrollment_once(api, lab, settings):
    server = register(api, lab, components=["backup"])
    finished, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    assert finished["state"] == "succeeded", finished["error"]
    steps = {s["name"]: s for s in api.simulate_get(f"{PREFIX}/tasks/{finished['id']}/log").json["steps"]}
    assert "backup-server answers on port 8743" in steps["start_backup"]["output"]
    assert "dns: not selected" in steps["start_dns"]["output"]
    shown = api.simulate_get(f"{PREFIX}/servers/{server['id']}").json
    assert {c["name"]: c["version"] for c in shown["components"]} == {"backup": backup_server_version()}

    url = f"http://{lab.address}:8743"
    assert requests.get(f"{url}/v1/status", timeout=10).status_code == 401
    users = [{"name": "steward", "role": "append", "password": "a" * 32}]
    wrong = requests.post(f"{url}/v1/enroll", json={"token": backup_enrollment_token("another key", server["id"]),
                                                    "users": users}, timeout=10)
    assert wrong.status_code == 403
    token = backup_enrollment_token(settings.secret_key, server["id"])
    assert requests.post(f"{url}/v1/enroll", json={"token": token, "users": users}, timeout=10).status_code == 200
    status = requests.get(f"{url}/v1/status", auth=("steward", "a" * 32), timeout=10).json()
    assert status["users"] == {"steward": "append"} and status["disk"]["free_bytes"] > 0
    # The daemon's database and repositories live in the lab host's prefix, private.
    data = lab.prefix / "var" / "lib" / "steward-backup"
    assert (data / "backup-server.sqlite3").stat().st_mode & 0o077 == 0
    # The bundle's copy of the daemon's configuration holds the token's hash, never the token.
    assert token not in (lab.prefix / "etc" / "steward" / "backup-server.json").read_text()


def test_a_backup_to_the_push_installed_daemon_is_listed_and_nothing_on_that_host_reads_it(api, lab, rpc, admin):
    """End to end as an operator: push-install a backup server, register it, back up, and the files on the
    backup host hold neither a row of the control plane nor a dump's header in plain text."""
    rpc.call("inventory", "update_settings", admin, {"backup": {"password": "correct horse battery staple"}})
    marker = f"plaintext-marker-{lab.tag}"
    assert api.simulate_post(f"{PREFIX}/servers", json={"name": marker, "address": "127.0.0.1", "os": "ubuntu",
                                                        "ssh_password": "unused"}).status_code == 201
    server = register(api, lab, components=["backup"])
    finished, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    assert finished["state"] == "succeeded", finished["error"]
    registered = api.simulate_post(f"{PREFIX}/backup-servers", json={"server_id": server["id"]})
    assert registered.status_code == 201, registered.text
    run = api.simulate_post(f"{PREFIX}/backups", json={"backup_server_id": registered.json["id"]})
    assert run.status_code == 202, run.text
    ran, _ = wait_for_task(api, run.json["id"])
    assert ran["state"] == "succeeded", ran["error"]
    [listed] = [b for b in api.simulate_get(f"{PREFIX}/backups").json if b["backup_server_id"] == registered.json["id"]]
    assert listed["size_bytes"] > 0

    stored = [p for p in (lab.prefix / "var" / "lib" / "steward-backup").rglob("*") if p.is_file()]
    assert any(p.parent.parent.name == "data" for p in stored), stored  # restic's packs are there
    for path in stored:
        held = path.read_bytes()
        assert marker.encode() not in held and b"PGDMP" not in held and b"COPY inventory" not in held, path

"""A server without a root login, end to end on a lab host: the administrator runs the bundle's
prepare_server.sh once as root, the user's sudo is then exactly the sudoers file it wrote, and push
install, diagnostics, push update and delete all work through the one entry point it allows, while the
user can run nothing else as root and cannot replace what sudo runs."""
import io
import json

from agent.provision import pv_probes as probes
from gateway.routes import PREFIX
from shared import ssh
from tests.lab import lab_host
from tests.provisioner.conftest import processes, push_install, register, wait_for_task
from tests.updater.conftest import wait_for_update
from tests.updater.images import dns_image

GZIP = {"Content-Type": "application/gzip"}


def _login(host, user, **secret):
    return ssh.connect(host.address, host.port, user, **secret)


def _prepare_as_root(api, host, server):
    """What the administrator does once: the bundle, extracted in root's home, and prepare_server.sh."""
    bundle = api.simulate_get(f"{PREFIX}/servers/{server['id']}/bundle")
    assert bundle.status_code == 200, bundle.text
    root = _login(host, "root", password=host.root_password)
    try:
        root.upload(io.BytesIO(bundle.content), str(host.root / "home" / "root" / "setup.tar"))
        status, output = root.run(f"cd && tar -xf setup.tar && bash setup-{server['id']}/prepare_server.sh")
        assert status == 0, output
        rules = host.prefix / "etc" / "sudoers.d" / "steward"
        host.limit_sudo(rules)  # the user's sudo: exactly that file, nothing else
        status, checked = root.run("visudo -c")
        assert status == 0 and "parsed OK" in checked, checked
    finally:
        root.close()
    return output, rules


def test_a_user_whose_sudo_is_only_the_entry_point_installs_updates_and_deletes(lab_api, monitoring_answers_or_is_absent):
    api = lab_api
    with lab_host() as host:
        # DNS alone: DELETE waits 10 s for the uninstall (the gateway's RPC deadline), and stopping the agent
        # too took 8.6 s of it here.
        server = register(api, host, components=["dns"])
        output, rules = _prepare_as_root(api, host, server)
        entry = host.prefix / "usr" / "local" / "sbin" / "steward-root"
        approved = host.prefix / "usr" / "local" / "lib" / "steward"
        assert f"user {host.user}: there already" in output and f"entry point: {entry}" in output
        sudo_rules = [line for line in rules.read_text().splitlines() if line and not line.startswith("#")]
        assert sudo_rules == [f"{host.user} ALL=(root) NOPASSWD: {entry}"]
        assert all(p.stat().st_uid == 0 for p in (entry, approved, approved / "pv_install.py", rules))

        user = _login(host, host.user, private_key=host.private_key)
        try:
            # Nothing else as root; the entry point neither replaced nor written around.
            status, said = user.run("sudo -n id")
            assert status != 0 and "a password is required" in said
            status, said = user.run(f"sudo -n /bin/sh -c id; sudo -n python3 {approved}/pv_install.py --help")
            assert status != 0 and "uid=0" not in said and "usage" not in said
            before = entry.read_bytes()
            for attempt in (f"cp /bin/sh {entry}", f"rm -f {entry}", f"mv {entry} {entry}.old",
                            f"ln -sf /bin/sh {entry}", f"echo id >> {approved}/pv_install.py",
                            f"touch {entry.parent}/steward-root2", f"echo >> {rules}"):
                status, said = user.run(attempt)
                assert status != 0, (attempt, said)
            assert entry.read_bytes() == before
            status, said = user.run(f"sudo -n {entry} --help")
            assert status == 0 and "install DIR" in said
            # An upload whose scripts were changed is refused before anything of it runs.
            upload = f"{host.root / 'home' / host.user}/setup-{server['id']}"
            user.upload(io.BytesIO(api.simulate_get(f"{PREFIX}/servers/{server['id']}/bundle").content),
                        f"{upload}.tar")
            marker = host.root / "ran-the-upload"  # only root can write there
            status, said = user.run(f"cd && tar -xf {upload}.tar && echo 'open(\"{marker}\", \"w\")' "
                                    f">> {upload}/pv_install.py && sudo -n {entry} install {upload}")
            assert status != 0 and "not the ones approved on this server" in said, said
            assert not marker.exists()
            assert not (host.prefix / "opt" / "steward").exists()
            user.run(f"rm -rf {upload} {upload}.tar")
        finally:
            user.close()

        # Push install as that user (a key, no password), through the entry point only.
        changed = api.simulate_patch(f"{PREFIX}/servers/{server['id']}",
                                     json={"ssh_user": host.user, "ssh_private_key": host.private_key})
        assert changed.status_code == 200, changed.text
        installed, _ = wait_for_task(api, push_install(api, server["id"])["id"], timeout=300)
        assert installed["state"] == "succeeded", installed["error"]
        connect = api.simulate_get(f"{PREFIX}/tasks/{installed['id']}/log").json["steps"][1]["output"]
        assert f"{host.user}@{host.address}" in connect and "with sudo -n" in connect
        assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")
        agent_config = host.prefix / "etc" / "steward" / "agent.json"
        assert agent_config.stat().st_uid == 0 and oct(agent_config.stat().st_mode & 0o777) == "0o600"
        assert json.loads(agent_config.read_text())["server_id"] == server["id"]
        assert not (host.root / "home" / host.user / f"setup-{server['id']}").exists()

        # Diagnostics run pv_diagnose.py as root through the entry point too.
        started = api.simulate_post(f"{PREFIX}/servers/{server['id']}/actions/diagnostics")
        assert started.status_code == 202, started.text
        wait_for_task(api, started.json["id"], timeout=120)
        diagnosed = api.simulate_get(f"{PREFIX}/servers/{server['id']}/diagnostics/{started.json['id']}").json
        checks = {c["name"]: c["status"] for c in diagnosed["checks"]}
        assert checks["ssh"] == "passed" and checks["runtime"] == "passed", diagnosed

        # Push update: the image goes up as the user, pv_update.py moves it in as root.
        added = api.simulate_post(f"{PREFIX}/versions", body=dns_image("3.3"), headers=GZIP)
        assert added.status_code == 201, added.text
        accepted = api.simulate_post(f"{PREFIX}/servers/{server['id']}/actions/push-update", json={"component": "dns"})
        assert accepted.status_code == 202, accepted.text
        updated = wait_for_update(api, accepted.json["task_id"], timeout=300)
        assert updated["state"] == "succeeded", updated["error"]
        assert updated["outcome"]["dns"]["to"] == "3.3"
        assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")

        # Delete uninstalls through the entry point; the preparation stays for the next install.
        deleted = api.simulate_delete(f"{PREFIX}/servers/{server['id']}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json["cleanup"]["uninstalled"] is True and deleted.json["cleanup"]["problems"] == [], deleted.json
        assert processes(host, "knotd") == "0"
        assert not (host.prefix / "opt" / "steward").exists()
        assert entry.exists() and rules.exists() and (approved / "prepared.json").exists()

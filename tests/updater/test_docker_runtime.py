"""runtime: docker for real: a lab host with a Docker engine of its own and the component images built
from Debian's packages; push install, an update, a broken update rolled back, and the server deleted.
The stop scripts remove only the containers this install started."""
import subprocess
import time

from agent.provision import pv_probes as probes
from gateway.routes import PREFIX
from services.provisioner.bundle import PROVISION_DIR, default_versions
from shared.config import ROOT
from tests.lab import lab_host
from tests.provisioner.conftest import push_install, register, wait_for_task
from tests.updater.conftest import wait_for_update
from tests.updater.images import dhcp_image, dns_image

GZIP = {"Content-Type": "application/gzip"}
OWNER = "steward.prefix"


def component_images():
    versions = default_versions()
    done = subprocess.run(["bash", "docker/component-images.sh", versions["dns"], versions["dhcp"]], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def ours(host):
    """{name: (image, running)} of the containers on the lab host's engine that carry an install's label."""
    lines = host.docker("ps", "-a", "--filter", f"label={OWNER}", "--format", "{{.Names}} {{.Image}} {{.State}}").stdout
    return {name: (image, state == "running") for name, image, state in (line.split() for line in lines.splitlines())}


def push_update(api, server_id, component):
    accepted = api.simulate_post(f"{PREFIX}/servers/{server_id}/actions/push-update", json={"component": component})
    assert accepted.status_code == 202, accepted.text
    return wait_for_update(api, accepted.json["task_id"])


def test_docker_runtime_install_update_rollback_and_delete(lab_api):
    api = lab_api
    started = time.monotonic()
    images = component_images()
    built = time.monotonic() - started
    with lab_host(docker=images) as host:
        engine_ready = time.monotonic() - started - built
        # The operator's own container under the name the production install uses: never ours to remove.
        host.docker("run", "-d", "--name", "pv_dns", "--network", "none", images[0], "sleep", "infinity")

        server = register(api, host, runtime="docker")
        task = push_install(api, server["id"])
        finished, _ = wait_for_task(api, task["id"], timeout=300)
        assert finished["state"] == "succeeded", finished["error"]
        running = ours(host)
        assert sorted(image for image, up in running.values() if up) == sorted(images), running
        assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")
        assert host.exec("python3", str(PROVISION_DIR / "pv_probes.py"), "dhcp").stdout.count("leased 198.51.100.") == 1
        listed = api.simulate_get(f"{PREFIX}/servers", params={"search": server["name"]}).json["items"][0]
        assert listed["versions"]["dns"] == default_versions()["dns"]

        # A configuration release runs on the installed image; a broken one is rolled back.
        assert api.simulate_post(f"{PREFIX}/versions", body=dns_image("3.3"), headers=GZIP).status_code == 201
        updated = push_update(api, server["id"], "dns")
        assert updated["state"] == "succeeded", updated["error"]
        assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")
        assert api.simulate_post(f"{PREFIX}/versions", body=dhcp_image("2.3", broken=True), headers=GZIP).status_code == 201
        broken = push_update(api, server["id"], "dhcp")
        assert broken["state"] == "rolled_back" and "verify dhcp 2.3 failed" in broken["error"]
        assert host.exec("python3", str(PROVISION_DIR / "pv_probes.py"), "dhcp").stdout.count("leased 198.51.100.") == 1
        versions = api.simulate_get(f"{PREFIX}/servers", params={"search": server["name"]}).json["items"][0]["versions"]
        assert (versions["dns"], versions["dhcp"]) == ("3.3", default_versions()["dhcp"])
        assert all(up for _, up in ours(host).values())

        deleted = api.simulate_delete(f"{PREFIX}/servers/{server['id']}")
        assert deleted.status_code == 200 and deleted.json["cleanup"]["problems"] == [], deleted.text
        assert deleted.json["cleanup"]["uninstalled"] is True
        assert ours(host) == {}
        bystander = host.docker("inspect", "-f", "{{.State.Status}}", "pv_dns").stdout.strip()
        assert bystander == "running"
        print(f"\ndocker runtime on a lab host: component images {built:.1f} s, lab engine with images "
              f"{engine_ready:.1f} s, the whole test {time.monotonic() - started:.1f} s")

"""Every way a release can fail ends with the last stable release running again, on a lab host with the real
knotd: knotd refuses the new configuration (it does not start), it starts and dies seconds later, the install
step fails half way, and the SSH connection drops in the middle of a step."""
import os
import random
import signal
import socket
import threading
import time

from agent.provision import pv_probes as probes
from gateway.routes import PREFIX
from tests.lab import lab_host
from tests.updater.conftest import install, wait_for_update
from tests.updater.images import GOOD_ZONE, image_bytes

GZIP = {"Content-Type": "application/gzip"}
# Knot cannot parse it: a release that ships it makes knotd refuse its whole configuration.
UNPARSABLE_CONF = "zone:\n  - domain: broken.example\n    no-such-option: [\n"


def _release_image(version, extra_files=None):
    zone = GOOD_ZONE.format(serial=int(version.split(".")[-1]) + 100, version=version)
    return image_bytes("dns", version, dict({"files/knot/zones/pvverify.test.zone": zone}, **(extra_files or {})))


def _upload_and_push(api, server, data, version):
    added = api.simulate_post(f"{PREFIX}/versions", body=data, headers=GZIP)
    assert added.status_code == 201, added.text
    accepted = api.simulate_post(f"{PREFIX}/servers/{server['id']}/actions/push-update",
                                 json={"component": "dns", "version": version})
    assert accepted.status_code == 202, accepted.text
    return accepted.json["task_id"]


def _release(address):
    """The TXT of release.pvverify.test: which release answers (None: no answer)."""
    query_id = random.randint(0, 0xFFFF)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.sendto(probes.dns_query("release.pvverify.test", probes.TXT, query_id), (address, 53))
            texts = probes.txt_answers(sock.recvfrom(4096)[0], query_id)
        except OSError:
            return None
    return texts[0] if texts else None


def _dns(api, server):
    return api.simulate_get(f"{PREFIX}/servers", params={"search": server["name"]}).json["items"][0]["versions"]["dns"]


def _assert_stable_runs(api, host, server, version, task):
    assert task["state"] == "rolled_back", task
    assert task["outcome"]["dns"]["outcome"] == "rolled_back" and task["outcome"]["dns"]["from"] == version
    assert f"rolled back to {version}" in task["error"]
    assert _dns(api, server) == version
    assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")
    assert _release(host.address) != task["outcome"]["dns"]["to"]


def test_every_way_a_dns_release_fails_ends_with_the_last_stable_release_running(lab_api):
    api = lab_api
    with lab_host() as host:
        server, = install(api, [host])
        knot = host.prefix / "etc" / "steward" / "knot"
        good = wait_for_update(api, _upload_and_push(api, server, _release_image("3.3"), "3.3"))
        assert good["state"] == "succeeded", good["error"]
        assert _release(host.address) == "3.3"

        # knotd refuses the new configuration: the process does not start. Its file must go with the rollback.
        refused = wait_for_update(api, _upload_and_push(
            api, server, _release_image("3.4", {"files/knot/zones.d/broken.conf": UNPARSABLE_CONF}), "3.4"))
        _assert_stable_runs(api, host, server, "3.3", refused)
        assert "start dns 3.4 failed" in refused["error"]
        assert not (knot / "zones.d" / "broken.conf").exists()
        assert _release(host.address) == "3.3"

        # It starts, answers, and dies seconds later.
        def crash_once_it_answers():
            deadline = time.monotonic() + 120
            while _release(host.address) != "3.5" and time.monotonic() < deadline:
                time.sleep(0.05)
            pid = int((host.prefix / "run" / "steward" / "knot" / "knot.pid").read_text())
            os.kill(pid, signal.SIGKILL)

        crasher = threading.Thread(target=crash_once_it_answers)
        crasher.start()
        died = wait_for_update(api, _upload_and_push(api, server, _release_image("3.5"), "3.5"))
        crasher.join()
        _assert_stable_runs(api, host, server, "3.3", died)
        assert "verify dns 3.5 failed" in died["error"]

        # The install step fails half way: unpacked, but something is in the way of the version's directory.
        (host.prefix / "provision" / "versions" / "dns" / "3.6").write_text("in the way\n")
        half = wait_for_update(api, _upload_and_push(api, server, _release_image("3.6"), "3.6"))
        _assert_stable_runs(api, host, server, "3.3", half)
        assert "install dns 3.6 failed" in half["error"]
        assert not [p for p in (host.prefix / "provision" / "versions" / "dns").iterdir() if p.name.startswith(".")]
        assert _release(host.address) == "3.3"


def _drop_ssh_sessions(host):
    """Kill the lab sshd's per-connection processes: every session the updater has drops at once."""
    children = host.exec("ps", "-o", "pid=", "--ppid", str(host.sshd.pid), check=False).stdout.split()
    for pid in children:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(children)


def test_an_ssh_connection_dropped_mid_update_is_picked_up_again(lab_api):
    api = lab_api
    with lab_host() as host:
        server, = install(api, [host])
        task_id = _upload_and_push(api, server, _release_image("3.3"), "3.3")
        deadline = time.monotonic() + 120
        while api.simulate_get(f"{PREFIX}/update-tasks/{task_id}").json["current_step"] != "verify dns 3.3":
            assert time.monotonic() < deadline, "the update never reached its verify step"
            time.sleep(0.05)
        assert _drop_ssh_sessions(host) >= 1
        task = wait_for_update(api, task_id)
        assert task["state"] == "succeeded", task["error"]
        assert [s["name"] for s in task["steps"]] == [
            "stop dns", "check dns", "install dns 3.3", "start dns 3.3", "verify dns 3.3"]
        assert _dns(api, server) == "3.3" and _release(host.address) == "3.3"

"""End to end on lab hosts, as a new user would: version 1 (the install) runs; upload a good version,
push it, see it run and answer; upload a broken one, see it rolled back."""
import time

from agent.provision import pv_probes as probes
from gateway.routes import PREFIX
from services.provisioner.bundle import PROVISION_DIR
from tests.lab import lab_host
from tests.updater.conftest import install, wait_for_update
from tests.updater.images import dhcp_image, dns_image

GZIP = {"Content-Type": "application/gzip"}


def _upload(api, data):
    added = api.simulate_post(f"{PREFIX}/versions", body=data, headers=GZIP)
    assert added.status_code == 201, added.text


def _push(api, server_id, **body):
    accepted = api.simulate_post(f"{PREFIX}/servers/{server_id}/actions/push-update", json=body)
    assert accepted.status_code == 202, accepted.text
    return accepted.json["task_id"]


def _versions(api, server):
    return api.simulate_get(f"{PREFIX}/servers", params={"search": server["name"]}).json["items"][0]["versions"]


def _lease(host):
    done = host.exec("python3", str(PROVISION_DIR / "pv_probes.py"), "dhcp", check=False)
    return done.returncode == 0 and "leased 198.51.100." in done.stdout


def test_dns_update_then_a_broken_release_is_rolled_back(lab_api, updater_events):
    api = lab_api
    with lab_host() as host:
        server, = install(api, [host])
        assert _versions(api, server)["dns"] == "3.2.6"

        _upload(api, dns_image("3.3"))
        started = time.monotonic()
        task = wait_for_update(api, _push(api, server["id"], component="dns"))
        elapsed = time.monotonic() - started
        assert task["state"] == "succeeded", task["error"]
        assert task["outcome"]["dns"] == {"outcome": "updated", "from": "3.2.6", "to": "3.3", "reason": None}
        assert [s["name"] for s in task["steps"]] == [
            "stop dns", "check dns", "install dns 3.3", "start dns 3.3", "verify dns 3.3"]
        assert _versions(api, server)["dns"] == "3.3"
        assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")
        print(f"\nsingle DNS update on a lab host: {elapsed:.2f} s")

        # Nothing newer: the component is started again, nothing else happens.
        same = wait_for_update(api, _push(api, server["id"], component="dns"))
        assert same["state"] == "succeeded" and same["outcome"]["dns"]["outcome"] == "up_to_date"
        assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")

        updater_events()  # forget what came so far
        _upload(api, dns_image("3.4", broken=True))
        broken = wait_for_update(api, _push(api, server["id"], component="dns"))
        assert broken["state"] == "rolled_back"
        assert "verify dns 3.4 failed" in broken["error"] and "rolled back to 3.3" in broken["error"]
        assert broken["outcome"]["dns"]["outcome"] == "rolled_back"
        assert [s["status"] for s in broken["steps"]][-2:] == ["failed", "succeeded"]  # verify, rollback
        assert _versions(api, server)["dns"] == "3.3"
        assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")

        events = updater_events.until("update_finished", task_id=broken["id"])
        rolled_back = [p for name, p in events if name == "update_rolled_back"]
        assert len(rolled_back) == 1
        assert (rolled_back[0]["failed_version"], rolled_back[0]["restored_version"]) == ("3.4", "3.3")
        assert rolled_back[0]["task_id"] == broken["id"] and rolled_back[0]["server_id"] == server["id"]
        progress = [p for name, p in events if name == "update_progress"]
        assert progress[0]["step"] == "stop dns" and progress[-1]["status"] == "succeeded"
        assert host.root_password not in str(events)

        log = api.simulate_get(f"{PREFIX}/update-tasks/{broken['id']}/log")
        assert log.status_code == 200 and "== verify dns 3.4: failed" in log.text
        assert host.root_password not in log.text


def test_a_dhcp_release_with_a_broken_pool_is_rolled_back(lab_api, updater_events):
    api = lab_api
    with lab_host() as host:
        server, = install(api, [host])
        assert _lease(host)
        updater_events()
        _upload(api, dhcp_image("2.3", broken=True))
        task = wait_for_update(api, _push(api, server["id"], component="dhcp"))
        assert task["state"] == "rolled_back", task
        assert "verify dhcp 2.3 failed" in task["error"] and "rolled back to 2.2.0" in task["error"]
        assert task["outcome"]["dhcp"]["from"] == "2.2.0" and task["outcome"]["dhcp"]["to"] == "2.3"
        assert _versions(api, server)["dhcp"] == "2.2.0"
        assert _lease(host)
        events = updater_events.until("update_finished", task_id=task["id"])
        assert [name for name, _ in events if name == "update_rolled_back"] == ["update_rolled_back"]


def test_pv_update_run_by_hand_on_the_server_queues_the_same_update(lab_api, updater_app):
    import json
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    api = lab_api
    with lab_host() as host:
        server, = install(api, [host])
        _upload(api, dns_image("3.3"))
        # The API where the lab host reaches it (the veth's far end), as its agent configuration says.
        http = make_server(host.host_address, 0, updater_app, handler_class=Quiet)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        try:
            config_path = host.prefix / "etc" / "steward" / "agent.json"
            config = json.loads(config_path.read_text())
            config["monitoring_url"] = f"http://{host.host_address}:{http.server_port}"
            config_path.write_text(json.dumps(config))

            # By the path the product's manual names.
            done = host.exec("env", f"STEWARD_PREFIX={host.prefix}", "python3",
                             str(host.prefix / "provision" / "libs" / "pv_update.py"), "--component", "dns", check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            task_id = done.stdout.split()[2]
            assert done.stdout.startswith(f"update task {task_id} queued")
            task = wait_for_update(api, task_id)
            assert task["state"] == "succeeded" and task["outcome"]["dns"]["to"] == "3.3"
            assert _versions(api, server)["dns"] == "3.3"
            assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")

            # The agent token of one server cannot update another.
            another = api.simulate_post(f"{PREFIX}/servers", json={"name": "another", "address": "192.0.2.9",
                                                                   "os": "ubuntu"}).json
            other = api.simulate_post(f"{PREFIX}/servers/{another['id']}/actions/push-update", json={},
                                      headers={"Authorization": f"Bearer {config['agent_token']}"})
            assert other.status_code == 403
        finally:
            http.shutdown()
            http.server_close()


def test_a_second_update_of_the_same_component_is_refused_while_the_first_runs(lab_api):
    api = lab_api
    with lab_host() as host:
        server, = install(api, [host])
        _upload(api, dns_image("3.3"))
        first = _push(api, server["id"], component="dns")
        for body in ({"component": "dns", "version": "3.2.6"}, {}):  # the same component, or every component
            again = api.simulate_post(f"{PREFIX}/servers/{server['id']}/actions/push-update", json=body)
            assert again.status_code == 409, again.text
            assert again.json["error"] == "operation_in_progress" and again.json["details"] == {"task_id": [first]}
            assert first in again.json["message"]
        task = wait_for_update(api, first)
        assert task["state"] == "succeeded", task["error"]
        assert [s["name"] for s in task["steps"]].count("stop dns") == 1
        after = wait_for_update(api, _push(api, server["id"]))  # free again once it ended
        assert after["state"] == "succeeded" and _versions(api, server)["dns"] == "3.3"


def test_a_push_install_ends_on_the_newest_version_the_catalog_holds(lab_api):
    from tests.waiting import wait_for

    api = lab_api
    _upload(api, dns_image("3.3"))  # newer than the 3.2.6 the bundle starts
    with lab_host() as host:
        server, = install(api, [host])
        task = wait_for(lambda: (items := api.simulate_get(f"{PREFIX}/servers/{server['id']}/update-tasks").json)
                        and items[0], timeout=60, interval=0.5, what="an update task after the install")
        assert task["requested_by"] == "install" and task["component"] is None
        task = wait_for_update(api, task["id"])
        assert task["state"] == "succeeded", task["error"]
        assert task["outcome"]["dns"]["outcome"] == "updated" and task["outcome"]["dns"]["to"] == "3.3"
        assert _versions(api, server)["dns"] == "3.3"
        assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")

"""`steward versions`, `steward rollouts` and `steward servers update|diagnose` against the real API over HTTP."""
from tests.updater.images import dns_image


def test_versions_upload_and_list(steward, tmp_path):
    image = tmp_path / "dns-3.3.tar.gz"
    image.write_bytes(dns_image("3.3"))
    code, out, _ = steward("versions", "upload", str(image), "--component", "dns")
    assert code == 0 and out.startswith("added dns 3.3 (sha256 ")
    code, out, _ = steward("versions", "list")
    assert code == 0 and "update mode: local" in out and "3.3" in out and "upload" in out

    broken = tmp_path / "cut.tar.gz"
    broken.write_bytes(dns_image("3.4")[:200])
    code, _, err = steward("versions", "upload", str(broken))
    assert code == 1 and "not a valid image" in err and "invalid_image" in err


def test_update_diagnose_and_rollouts_say_what_went_wrong(steward, rpc, admin):
    rpc.call("inventory", "create_server", admin, {"name": "closed-1", "address": "127.0.0.1", "ssh_port": 1,
                                                   "os": "ubuntu", "ssh_password": "x", "runtime": "process"})
    code, out, _ = steward("servers", "update", "closed-1", "--component", "dns", "--wait", "--poll-seconds", "0.1")
    assert code == 1 and "failed" in out and "cannot reach the server" in out
    code, out, _ = steward("servers", "diagnose", "closed-1")
    assert code == 1 and "cannot log in over SSH" in out
    code, out, _ = steward("rollouts", "create", "--search", "closed", "--component", "dns")
    assert code == 0 and "closed-1" in out
    code, out, _ = steward("rollouts", "list")
    assert code == 0 and "dns" in out
    code, _, err = steward("rollouts", "show", "999")
    assert code == 1 and "no rollout 999" in err

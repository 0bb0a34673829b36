"""The steward CLI against the real API over HTTP."""
import json

import pytest

from cli.main import main


@pytest.fixture
def steward(api_url, admin_token, capsys):
    def run(*argv, token=admin_token):
        code = main(["--url", api_url, "--token", token, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_create_list_show_modify_delete(steward, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("cli-secret\n")
    code, out, _ = steward("servers", "create", "--name", "edge-dns", "--address", "10.2.0.1", "--os", "ubuntu",
                           "--ssh-password-file", str(secret))
    assert code == 0 and "created server edge-dns" in out

    code, out, _ = steward("servers", "list", "--search", "EDGE")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split() == ["ID", "NAME", "REQUESTS", "DNS", "MONITOR", "DHCP", "STATE"]
    assert "edge-dns" in row and "0 (red)" in row and "unknown" in row

    code, out, _ = steward("--json", "servers", "list", "--filter-by", "state=unknown", "--sort=-name")
    page = json.loads(out)
    assert code == 0 and page["total"] == 1 and page["items"][0]["name"] == "edge-dns"

    code, out, _ = steward("--json", "servers", "show", "edge-dns")
    assert json.loads(out)["ssh_auth"] == "password" and "cli-secret" not in out

    code, out, _ = steward("servers", "modify", "edge-dns", "--ssh-port", "2200", "--new-name", "edge-dns-2")
    assert code == 0 and "edge-dns-2" in out
    code, out, _ = steward("servers", "delete", "edge-dns-2")
    assert code == 0
    code, out, _ = steward("--json", "servers", "list")
    assert json.loads(out)["total"] == 0


def test_errors_exit_non_zero_with_a_clear_message(steward):
    code, _, err = steward("servers", "create", "--name", "x", "--address", "bad..", "--os", "ubuntu")
    assert code == 1
    assert "invalid server" in err and "address: must be a fully qualified domain name or an IP address" in err
    code, _, err = steward("servers", "show", "missing")
    assert code == 1 and "no server named missing" in err
    code, _, err = steward("servers", "list", token="wrong")
    assert code == 1 and "HTTP 401" in err
    code, _, err = steward("servers", "list", "--filter-by", "colour=red")
    assert code == 2 and "--filter-by" in err
    code, _, err = steward("settings", "set", "nodot=1")
    assert code == 2


def test_settings_and_tokens(steward):
    code, out, _ = steward("settings", "set", "monitoring.raw_retention_minutes=120", "monitoring.verify_ca=true")
    assert code == 0
    code, out, _ = steward("--json", "settings", "show", "monitoring")
    shown = json.loads(out)["monitoring"]
    assert shown["raw_retention_minutes"] == 120 and shown["verify_ca"] is True
    code, out, err = steward("tokens", "create", "--name", "script")
    assert code == 0 and len(out.strip()) > 20 and "shown once" in err
    code, out, _ = steward("servers", "list", token=out.strip())
    assert code == 0


def test_unreachable_api(capsys):
    assert main(["--url", "http://127.0.0.1:9", "--token", "x", "servers", "list"]) == 1
    assert "cannot reach the Steward API" in capsys.readouterr().err

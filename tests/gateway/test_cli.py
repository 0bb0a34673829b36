"""The steward CLI against the real API over HTTP."""
import json
import re
import socket
import threading

import pytest

from cli.main import main


@pytest.fixture
def steward(api_url, admin_token, capsys, all_services):
    # all_services: the server list asks monitoring-ingest, whose queue (left by an earlier module) would
    # otherwise keep each list waiting out the RPC timeout.
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
    code, _, err = steward("notifications", "channels", "create", "--name", "x", "--kind", "webhook", "--set", "url")
    assert code == 2 and "--set takes KEY=VALUE, not 'url'" in err


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


class LosesFirstAnswer:
    """A TCP hop to the API that passes the first request on, waits for the API's answer to start (the create
    has run), and drops the connection instead of passing the answer back; then forwards as it is."""

    def __init__(self, api_url):
        self.target = ("127.0.0.1", int(api_url.rsplit(":", 1)[1]))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = []  # each request's head, as the API received it
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            client, _ = self.listener.accept()
            with client, socket.create_connection(self.target) as upstream:
                head, _, body = self._read_request(client)
                self.requests.append(head.decode("latin-1"))
                upstream.sendall(head + b"\r\n\r\n" + body)
                answer = upstream.recv(65536)
                if len(self.requests) == 1:
                    continue  # lost on its way back
                while answer:
                    client.sendall(answer)
                    answer = upstream.recv(65536)

    @staticmethod
    def _read_request(client):
        data = b""
        while b"\r\n\r\n" not in data:
            data += client.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(body) < length:
            body += client.recv(65536)
        return head, None, body


def test_a_create_whose_answer_was_lost_is_sent_again_with_its_key_and_runs_once(api_url, admin_token, capsys,
                                                                                 all_services):
    hop = LosesFirstAnswer(api_url)
    code = main(["--url", hop.url, "--token", admin_token, "--json", "servers", "create", "--name", "lossy",
                 "--address", "10.3.0.1", "--os", "ubuntu"])
    created = json.loads(capsys.readouterr().out)
    assert code == 0 and created["name"] == "lossy"
    keys = [re.search(r"(?im)^idempotency-key: *(\S+)", head).group(1) for head in hop.requests]
    assert len(keys) == 2 and keys[0] == keys[1]  # the retry carried the first request's key
    code = main(["--url", api_url, "--token", admin_token, "--json", "servers", "list"])
    listed = json.loads(capsys.readouterr().out)
    assert code == 0 and [s["id"] for s in listed["items"]] == [created["id"]]  # made once


def test_filter_by_any_listed_column_of_servers_users_tokens_and_tasks(steward):
    for name, os_name, runtime in (("f-ubuntu-docker", "ubuntu", "docker"), ("f-centos-process", "centos", "process"),
                                   ("f-centos-docker", "centos", "docker")):
        assert steward("servers", "create", "--name", name, "--address", "10.3.0.1", "--os", os_name,
                       "--runtime", runtime)[0] == 0

    def names(*filters):
        code, out, err = steward("--json", "servers", "list", "--search", "f-",
                                 *[arg for f in filters for arg in ("--filter-by", f)])
        assert code == 0, err
        page = json.loads(out)
        return sorted(row["name"] for row in page["items"]), page["total"]

    # os and runtime are filtered by the API over the whole fleet (the total says so), as state is.
    assert names("os=centos") == (["f-centos-docker", "f-centos-process"], 2)
    assert names("os=centos", "runtime=process") == (["f-centos-process"], 1)
    assert names("state=unknown", "runtime=docker") == (["f-centos-docker", "f-ubuntu-docker"], 2)
    assert names("name=F-UBUNTU-DOCKER")[0] == ["f-ubuntu-docker"]  # a column of the rows, any case
    code, _, err = steward("servers", "list", "--filter-by", "colour=blue")
    assert code == 2 and "KEY one of state, os, runtime" in err
    code, _, err = steward("servers", "list", "--filter-by", "os=windows")
    assert code == 1 and "os" in err  # the API's 400, said plainly

    assert steward("users", "create", "filter-op", "--role", "operator", "--groups", "servers")[0] == 0
    assert steward("users", "create", "filter-viewer")[0] == 0
    code, out, _ = steward("--json", "users", "list", "--filter-by", "role=operator")
    operators = json.loads(out)  # filter-op, and the server users made with the servers above
    assert code == 0 and "filter-op" in [u["name"] for u in operators] and {u["role"] for u in operators} == {"operator"}
    code, out, _ = steward("--json", "users", "list", "--filter-by", "name=filter-viewer")
    assert [u["role"] for u in json.loads(out)] == ["viewer"]
    code, out, _ = steward("--json", "users", "list", "--filter-by", "groups=servers", "--filter-by", "name=filter-op")
    assert [u["name"] for u in json.loads(out)] == ["filter-op"]

    assert steward("tokens", "create", "--name", "filter-me", "--user", "filter-op")[0] == 0
    code, out, _ = steward("--json", "tokens", "list", "--filter-by", "user=filter-op")
    assert code == 0 and [t["name"] for t in json.loads(out)] == ["filter-me"]
    code, _, err = steward("tokens", "list", "--filter-by", "secret=x")
    assert code == 2 and "KEY one of id, name, user" in err

    code, out, err = steward("--json", "tasks", "list", "--filter-by", "state=failed", "--filter-by", "kind=install")
    assert code == 0 and all(t["state"] == "failed" for t in json.loads(out)["items"]), err
    code, _, err = steward("tasks", "list", "--filter-by", "state")
    assert code == 2 and "KEY=VALUE" in err


def test_users_modify_and_delete(steward):
    assert steward("users", "create", "changing", "--role", "viewer")[0] == 0
    code, out, _ = steward("users", "modify", "changing", "--role", "operator", "--groups", "servers,dns")
    assert code == 0 and "modified user changing (operator; groups" in out
    code, out, _ = steward("--json", "users", "list", "--filter-by", "name=changing")
    changed = json.loads(out)[0]
    assert changed["role"] == "operator" and sorted(changed["groups"]) == ["dns", "servers"]
    assert steward("users", "modify", "changing")[0] == 2  # nothing to change
    code, out, _ = steward("users", "delete", "changing")
    assert code == 0 and "deleted user changing" in out
    code, out, _ = steward("--json", "users", "list", "--filter-by", "name=changing")
    assert json.loads(out) == []
    code, _, err = steward("users", "delete", "changing")
    assert code == 2 and "no user named changing" in err


def test_a_refused_delete_says_delete(steward):
    assert steward("users", "create", "not-the-owner", "--role", "operator")[0] == 0
    code, out, _ = steward("tokens", "create", "--name", "t", "--user", "not-the-owner")
    token = out.strip()
    assert steward("servers", "create", "--name", "owned-by-admin", "--address", "10.4.0.1", "--os", "ubuntu")[0] == 0
    code, _, err = steward("servers", "delete", "owned-by-admin", token=token)
    assert code == 1 and "HTTP 403" in err and "may delete owned-by-admin" in err and "install" not in err


def test_monitoring_tables_and_json(steward):
    assert steward("servers", "create", "--name", "quiet-dns", "--address", "10.5.0.1", "--os", "ubuntu")[0] == 0
    code, out, _ = steward("monitoring", "system", "quiet-dns")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["AT", "SAMPLES", "LOAD1"]
    assert "0 point(s) of 60 s for quiet-dns" in out
    code, out, _ = steward("monitoring", "dns", "quiet-dns", "--step", "3600")
    assert code == 0 and "0 queries in 0 step(s) of 3600 s for quiet-dns" in out
    code, out, _ = steward("--json", "monitoring", "rps", "www.example.com", "--type", "a", "--server", "quiet-dns")
    series = json.loads(out)
    assert code == 0 and (series["name"], series["type"], series["points"]) == ("www.example.com.", "A", [])
    code, out, _ = steward("monitoring", "records", "quiet-dns", "--sort", "name")
    assert code == 0 and "0 of 0 record(s), 0 hits in all, page 1" in out
    code, _, err = steward("monitoring", "dns", "quiet-dns", "--step", "61")
    assert code == 1 and "step" in err

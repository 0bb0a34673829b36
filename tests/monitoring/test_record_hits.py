"""Every DNS record's hits in a period, from the agent's messages through the consumer, read through the
gateway and the CLI: sorted, paged, searched, with the total and each one's last access in the period."""
import json
from datetime import datetime, timedelta, timezone

from cli import main as cli
from tests.gateway.conftest import api_url, app  # noqa: F401 (fixtures)
from .helpers import message, wait_for

# Yesterday, a quarter past an hour: whole minutes and hours, in the past whenever the tests run.
MINUTE = (datetime.now(timezone.utc) - timedelta(days=1)).replace(minute=15, second=0, microsecond=0)


def _at(seconds):
    return (MINUTE + timedelta(seconds=seconds)).isoformat()


def _record(name, kind, hits, at):
    return {"name": name, "type": kind, "hits": hits, "last_access": _at(at)}


def test_every_records_hits_in_a_period_sorted_paged_with_totals(rpc, admin, admin_token, server, api, monitoring,
                                                                agent_publish, scalar, api_url, capsys):  # noqa: F811
    other = rpc.call("inventory", "create_server", admin, {"name": "other", "address": "192.0.2.9", "os": "ubuntu"})
    agent_publish(message("dns", server["id"], 0, MINUTE + timedelta(seconds=59), total=18, records=[
        _record("www.example.com.", "A", 12, 50), _record("mail.example.com.", "MX", 5, 40),
        _record("ftp.example.com.", "A", 1, 30)]))
    agent_publish(message("dns", server["id"], 1, MINUTE + timedelta(seconds=119), total=3,
                          records=[_record("www.example.com.", "A", 3, 110)]))
    # An hour later (outside the first period), and another server (never in this one's list).
    agent_publish(message("dns", server["id"], 2, MINUTE + timedelta(seconds=3659), total=100,
                          records=[_record("www.example.com.", "A", 100, 3650)]))
    agent_publish(message("dns", other["id"], 0, MINUTE + timedelta(seconds=59), total=50,
                          records=[_record("www.example.com.", "A", 50, 55)]))
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.dns_periods") == 4)

    headers = {"Authorization": f"Bearer {admin_token}"}
    path = f"/api/v2/monitoring/servers/{server['id']}/records/hits"
    period = {"start": MINUTE.isoformat(), "end": (MINUTE + timedelta(hours=1)).isoformat()}

    def hits(**params):
        answer = api.simulate_get(path, params=dict(period, **params), headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json

    page = hits()
    assert (page["total"], page["hits"], page["page"], page["per_page"]) == (3, 21, 1, 50)
    assert [(r["name"], r["type"], r["hits"], r["last_access"]) for r in page["items"]] == [
        ("www.example.com.", "A", 15, _at(110)), ("mail.example.com.", "MX", 5, _at(40)),
        ("ftp.example.com.", "A", 1, _at(30))]
    by_name = hits(sort="name", per_page="2", page="2")
    assert [r["name"] for r in by_name["items"]] == ["www.example.com."] and by_name["total"] == 3
    assert [r["name"] for r in hits(sort="-last_access")["items"]][0] == "www.example.com."
    assert [r["hits"] for r in hits(sort="hits")["items"]] == [1, 5, 15]
    searched = hits(search="MAIL")
    assert (searched["total"], searched["hits"], [r["name"] for r in searched["items"]]) == (
        1, 5, ["mail.example.com."])
    # Whole hours read the hourly aggregates (and the minutes of hours not rolled up yet): the same sums.
    hour = MINUTE.replace(minute=0)
    both = hits(start=hour.isoformat(), end=(hour + timedelta(hours=2)).isoformat())
    assert both["hits"] == 121 and both["items"][0]["hits"] == 115 and both["items"][0]["last_access"] == _at(3650)
    assert hits(page="9")["items"] == [] and hits(page="9")["total"] == 3

    for params, field in (({"sort": "loudest"}, "sort"), ({"per_page": "0"}, "per_page"),
                          ({"start": period["end"], "end": period["start"]}, "start")):
        bad = api.simulate_get(path, params=params, headers=headers)
        assert bad.status_code == 400 and field in bad.json["details"], bad.text

    assert cli.main(["--url", api_url, f"--token={admin_token}", "monitoring", "records", server["name"],
                     "--start", period["start"], "--end", period["end"]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "TYPE", "HITS", "LAST", "ACCESS"]
    assert out[1].split()[:3] == ["www.example.com.", "A", "15"]
    assert "3 of 3 record(s), 21 hits in all, page 1" in out[-1]
    assert cli.main(["--url", api_url, f"--token={admin_token}", "--json", "monitoring", "records",
                     str(server["id"]), "--start", period["start"], "--end", period["end"], "--sort", "name",
                     "--per-page", "1"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["items"]] == ["ftp.example.com."]
    assert cli.main(["--url", api_url, f"--token={admin_token}", "monitoring", "records", server["name"],
                     "--start", "yesterday"]) == 1
    assert "start" in capsys.readouterr().err


def test_the_operation_is_in_the_openapi_document(api):
    operation = api.simulate_get("/api/v2/openapi.json").json["paths"][
        "/api/v2/monitoring/servers/{server_id}/records/hits"]["get"]
    assert operation["tags"] == ["Monitoring"]
    assert {p["name"] for p in operation["parameters"]} >= {"start", "end", "sort", "search", "page", "per_page"}

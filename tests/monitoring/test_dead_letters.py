"""Dead letters through the API and the CLI: what the consumer refused is listed with the reason, shown,
retried (unless the consumer would refuse it again) or dropped; the queue keeps the rest in order."""
import json

import pytest

from cli import main as cli
from shared.schemas.agent import stats_routing_key
from tests.gateway.conftest import api_url, app  # noqa: F401 (fixtures)
from tests.conftest import create_token
from tests.queues import queue_depth
from .helpers import message, refused_by_the_database, wait_for


def test_dead_letters_are_listed_shown_retried_or_dropped(settings, rpc, admin, admin_token, server, api, monitoring,
                                                         agent_publish, dead_letters, scalar, capsys,
                                                         api_url):  # noqa: F811
    other = rpc.call("inventory", "create_server", admin, {"name": "other", "address": "192.0.2.9", "os": "ubuntu"})
    agent_publish(message("system", server["id"], 1), raw=b"{not json")
    # Under this server's key, a body that speaks for another.
    agent_publish(message("system", server["id"], 2), raw=json.dumps(message("system", other["id"], 2)).encode())
    wait_for(lambda: queue_depth(settings, "monitoring.dead")[0] == 2, what="two letters on monitoring.dead")
    sound = refused_by_the_database(settings, server["id"])
    headers = {"Authorization": f"Bearer {admin_token}"}

    listed = api.simulate_get("/api/v2/dead-letters", headers=headers)
    assert listed.status_code == 200, listed.text
    assert listed.json["total"] == 3
    reasons = [item["reason"] for item in listed.json["items"]]
    assert reasons[0].startswith("not JSON") and reasons[1].startswith(f"the body speaks for server {other['id']}")
    assert reasons[2].startswith("the database refused it")
    assert {item["queue"] for item in listed.json["items"]} == {"monitoring.dead"}
    assert all(item["dead_lettered_at"] for item in listed.json["items"][:2])  # the consumer stamps when
    assert api.simulate_get("/api/v2/dead-letters", params={"limit": "1"}, headers=headers).json["total"] == 3
    malformed, mismatched = listed.json["items"][0]["id"], listed.json["items"][1]["id"]
    # Listing took nothing away, and kept the order.
    assert [i["id"] for i in api.simulate_get("/api/v2/dead-letters", headers=headers).json["items"]] == [
        malformed, mismatched, sound]

    shown = api.simulate_get(f"/api/v2/dead-letters/{malformed}", headers=headers).json
    assert shown["body"] == "{not json" and shown["routing_key"] == stats_routing_key("system", server["id"])

    # The consumer would refuse these again: a retry says why and leaves them be.
    for letter in (malformed, mismatched):
        again = api.simulate_post(f"/api/v2/dead-letters/{letter}/retry", headers=headers)
        assert again.status_code == 409 and again.json["error"] == "would_be_refused_again", again.text
    assert "not JSON" in api.simulate_post(f"/api/v2/dead-letters/{malformed}/retry", headers=headers).json["message"]
    # This one goes through, and is stored.
    retried = api.simulate_post(f"/api/v2/dead-letters/{sound}/retry", headers=headers)
    assert retried.status_code == 200 and retried.json["id"] == sound, retried.text
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = :s", s=server["id"]) == 1,
             what="the retried statistics stored")
    assert api.simulate_get(f"/api/v2/dead-letters/{sound}", headers=headers).status_code == 404

    assert api.simulate_delete(f"/api/v2/dead-letters/{malformed}", headers=headers).status_code == 204
    gone = api.simulate_delete(f"/api/v2/dead-letters/{malformed}", headers=headers)
    assert gone.status_code == 404 and gone.json["error"] == "dead_letter_not_found"
    assert [i["id"] for i in api.simulate_get("/api/v2/dead-letters", headers=headers).json["items"]] == [mismatched]

    # The same through the CLI.
    steward = ["--url", api_url, f"--token={admin_token}"]
    assert cli.main(steward + ["dead-letters", "list"]) == 0
    out = capsys.readouterr().out
    assert mismatched in out and "the body speaks for server" in out and "1 dead letter(s)" in out
    assert cli.main(steward + ["--json", "dead-letters", "show", mismatched]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == mismatched
    assert cli.main(steward + ["dead-letters", "retry", mismatched]) == 1
    assert "would refuse it again" in capsys.readouterr().err
    assert cli.main(steward + ["dead-letters", "drop", mismatched]) == 0
    assert f"dropped {mismatched}" in capsys.readouterr().out
    assert queue_depth(settings, "monitoring.dead") == (0, 0)
    with pytest.raises(SystemExit) as refused:
        cli.main(steward + ["dead-letters", "list", "--queue", "elsewhere"])
    assert refused.value.code == 2 and "invalid choice: 'elsewhere'" in capsys.readouterr().err


def test_dead_letters_are_for_admins(rpc, admin, api, monitoring):
    rpc.call("inventory", "create_user", admin, {"name": "op", "role": "operator"})
    operator = create_token(rpc, admin, {"user": "op"})["token"]
    refused = api.simulate_get("/api/v2/dead-letters", headers={"Authorization": f"Bearer {operator}"})
    assert refused.status_code == 403 and refused.json["error"] == "permission_denied"

"""The spool's bound and the pull endpoint over real HTTP."""
import datetime
import json
import logging

import pytest

from agent.pull import PullServer
from agent.spool import Spool

from agent_lab import http_get

NOW = datetime.datetime(2026, 11, 24, 10, 0, tzinfo=datetime.timezone.utc)


def test_full_spool_drops_the_oldest_and_counts_them(tmp_path, caplog):
    spool = Spool(str(tmp_path / "spool.sqlite3"), max_messages=3, server_id=9)
    with caplog.at_level(logging.WARNING, logger="agent.spool"):
        for reading in range(5):
            spool.append("system", NOW, {"reading": reading})
    kept = [json.loads(body) for _, body in spool.read(0, 10)]
    assert [message["data"]["reading"] for message in kept] == [2, 3, 4]
    assert [message["seq"] for message in kept] == [3, 4, 5]
    assert spool.dropped() == 2
    assert "2 dropped so far" in caplog.text


def test_sequence_numbers_and_messages_survive_a_restart(tmp_path):
    path = str(tmp_path / "spool.sqlite3")
    spool = Spool(path, max_messages=100, server_id=9)
    spool.append("dns", NOW, {"total": 0})
    spool.append("system", NOW, {})
    spool.close()
    reopened = Spool(path, max_messages=100, server_id=9)
    message = reopened.append("dns", NOW, {"total": 1})
    assert message["seq"] == 2
    assert [json.loads(body)["kind"] for _, body in reopened.read(0, 10)] == ["dns", "system", "dns"]


@pytest.fixture
def pull(tmp_path):
    spool = Spool(str(tmp_path / "spool.sqlite3"), max_messages=1000, server_id=9)
    server = PullServer(spool, "agent-token", "127.0.0.1", 0)
    server.start()
    yield spool, "http://127.0.0.1:%d/v1/stats" % server.port
    server.stop()
    spool.close()


def test_cursors_read_everything_once_while_messages_keep_arriving(pull):
    spool, url = pull
    seen, cursor, appended = [], 0, 0
    for round_ in range(6):
        for _ in range(round_ * 3):  # more arrive between polls
            appended += 1
            spool.append("system", NOW, {"n": appended})
        status, page = http_get("%s?after=%d&limit=4" % (url, cursor), "agent-token")
        assert status == 200
        seen += [item["data"]["n"] for item in page["items"]]
        assert page["next_cursor"] >= cursor
        cursor = page["next_cursor"]
    while True:
        status, page = http_get("%s?after=%d&limit=4" % (url, cursor), "agent-token")
        if not page["items"]:
            break
        seen += [item["data"]["n"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert seen == list(range(1, appended + 1))
    assert page == {"items": [], "next_cursor": cursor}
    # Asking after the last cursor confirmed everything: the agent no longer keeps it.
    assert spool.pending() == 0


def test_polling_again_with_the_same_cursor_repeats_the_page(pull):
    spool, url = pull
    for n in range(3):
        spool.append("dns", NOW, {"n": n})
    first = http_get(url + "?after=0&limit=2", "agent-token")
    assert first == http_get(url + "?after=0&limit=2", "agent-token")  # a lost answer is fetched again
    assert [item["seq"] for item in first[1]["items"]] == [1, 2]


def test_cursor_from_before_the_spool_was_recreated_starts_over(pull):
    spool, url = pull
    spool.append("dns", NOW, {"n": 1})
    status, page = http_get(url + "?after=500", "agent-token")
    assert (status, [item["data"]["n"] for item in page["items"]]) == (200, [1])


def test_bad_token_bad_query_and_unknown_path(pull):
    spool, url = pull
    spool.append("dns", NOW, {"n": 1})
    assert http_get(url, "wrong-token") == (401, {"error": "not_authenticated", "message": "a valid agent token is required"})
    assert http_get(url)[0] == 401
    assert http_get(url + "?after=-1", "agent-token")[0] == 400
    status, body = http_get(url + "?limit=abc", "agent-token")
    assert (status, body["error"]) == (400, "invalid_input")
    assert http_get(url + "?limit=100000", "agent-token")[0] == 400
    assert http_get(url.replace("/v1/stats", "/v1/other"), "agent-token")[0] == 404
    assert spool.pending() == 1  # refused requests confirm nothing
